"""Frozen CNN backbones from `keras.applications`, turning frames into per-frame embeddings.

Any model of `keras.applications` can be named (`mobilenet_v2`, `vgg16`, `resnet50`,
`efficientnet_b0`, ...): it is built with `include_top=False`, frozen, and fed through its own
`preprocess_input`. Its last feature map is average-pooled globally (`avg`, one vector per frame) or
on a grid of cells (`grid2`, `grid3`: 2x2 or 3x3 vectors, concatenated), which keeps where things
are in the frame: what a sequence model needs to see a small object move or a shape turn. Weights
are `imagenet` (from the Keras cache, or downloaded where a network exists), `none` (random but
seeded, for tests: identical in every process), or the path of a weights file (identified by its sha256).

On CPUs with native bfloat16 (AVX512-BF16 or AMX), `precision="auto"` computes VGG16 in bfloat16
(Keras mixed precision: float32 weights, bfloat16 maths): faster than float32 for a relative
feature error well under 1%. MobileNetV2 stays float32, where it is faster (README: *Measured design choices*).
On GPUs with tensor cores (compute capability 7.0 and up) `auto` computes VGG16 in mixed float16,
the case TensorFlow's mixed-precision guide documents as faster; MobileNetV2 stays float32 there too
(its features move several times further in float16 than VGG16's: README, *Precision*).

Frames go through the network in fixed-size batches (the last one padded), so the graph is traced
and frozen once, and a video's features do not depend on which other videos shared its batch. The
batches run on TensorFlow or, converted once and cached, on a CPU inference runtime (`runtimes`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import BackboneError, InputError, error_line
from pipeline.core.hashing import file_sha256
from pipeline.store.layout import POOLINGS, grid_side

RANDOM_WEIGHTS_SEED = 1234
KERAS_WEIGHTS_URL = re.compile(r"https?://\S+?/([^/\s:]+\.h5)")


@dataclass(frozen=True)
class Weights:
    """What `--weights` asked for: `imagenet`, `none`, or a file (with its sha256 as identity)."""

    kind: str  # "imagenet" | "none" | "file"
    path: str = ""
    sha256: str = ""

    @classmethod
    def parse(cls, value: str) -> "Weights":
        if value in ("imagenet", "none"):
            return cls(value)
        path = Path(value).expanduser()
        if not path.is_file():
            raise BackboneError(
                f"--weights {value}: no such file; give 'imagenet', 'none', or the path of a Keras weights "
                "file (.h5 / .weights.h5)"
            )
        return cls("file", str(path.resolve()), file_sha256(path))

    @property
    def identity(self) -> str:
        """What makes two runs' weights the same: the name, or the file's content hash."""
        return f"sha256:{self.sha256}" if self.kind == "file" else self.kind


def available_backbones() -> dict[str, str]:
    """Map of accepted backbone names (lower case, no separators) to keras.applications names."""
    import keras

    return {
        name.lower(): name
        for name in dir(keras.applications)
        if name[:1].isupper() and callable(getattr(keras.applications, name))
    }


def canonical_name(name: str) -> str:
    """`MobileNetV2`, `mobilenet-v2` and `mobilenet_v2` all mean the same backbone."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


class Backbone:
    """A frozen, pooled CNN that embeds uint8 RGB frames; build it with `load_backbone`.

    `runtime` is where the batches run (see `runtimes`): the name of the one actually used, after
    any fallback to TensorFlow.
    """

    def __init__(
        self,
        name: str,
        weights: Weights,
        image_size: int,
        batch_size: int,
        model,
        preprocess,
        precision: str = "float32",
        runtime: str = "tensorflow",
        pooling: str = "avg",
    ):
        from pipeline.extract.runtimes import load_runtime

        self.name, self.weights, self.image_size, self.batch_size = name, weights, image_size, batch_size
        self.precision, self.pooling = precision, pooling
        self.model, self.preprocess, self._graphs = model, preprocess, {}
        self.dim = int(model.output_shape[-1])
        self.runtime, self._embed = load_runtime(self, runtime)

    def embed(self, frames: np.ndarray) -> np.ndarray:
        """Features (n, dim) float32 for frames (n, size, size, 3) uint8, in fixed-size batches."""
        out = np.empty((len(frames), self.dim), np.float32)
        for start in range(0, len(frames), self.batch_size):
            batch = frames[start : start + self.batch_size]
            count = len(batch)
            if count < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - count, *batch.shape[1:]), np.uint8)])
            out[start : start + count] = np.asarray(self._embed(batch))[:count]
        return out

    def tensorflow_graph(self, batch_size: int | None):
        """The backbone as a traced TensorFlow function, uint8 frames (batch, size, size, 3) -> float32 features.

        `batch_size=None` leaves the batch open: what the runtimes convert, so one converted model serves every batch
        size.
        """
        import tensorflow as tf

        if batch_size not in self._graphs:  # traced once per batch size
            model, preprocess = self.model, self.preprocess
            spec = tf.TensorSpec((batch_size, self.image_size, self.image_size, 3), tf.uint8, name="frames")
            self._graphs[batch_size] = tf.function(
                lambda x: tf.cast(model(preprocess(tf.cast(x, tf.float32)), training=False), tf.float32),
                input_signature=[spec],
            )
        return self._graphs[batch_size]

    def tensorflow_batch_function(self):
        """TensorFlow's batch function: the frozen graph at the fixed batch size."""
        return _frozen(self.tensorflow_graph(self.batch_size))


def _frozen(graph):
    """The traced graph with its weights as constants, so TensorFlow can optimise it for inference.

    With constant weights, Grappler folds batch normalisation into the convolutions and fuses
    conv + bias + activation (oneDNN on CPU): faster, with features equal to 4e-5 (README: *Measured
    design choices*). The freezing helper is not public API, so without it the graph runs as traced.
    """
    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError:
        return lambda batch: graph(batch).numpy()
    import tensorflow as tf

    frozen = convert_variables_to_constants_v2(graph.get_concrete_function())
    return lambda batch: frozen(tf.convert_to_tensor(batch))[0].numpy()


PRECISIONS = ("auto", "float32", "bfloat16", "float16")
POLICIES = {
    "float32": "float32",
    "bfloat16": "mixed_bfloat16",
    "float16": "mixed_float16",
}  # Keras dtype policy per precision
TENSOR_CORES = (7, 0)  # the first compute capability with float16 tensor cores (Volta)


# measured faster in bfloat16 on the CPU (README); MobileNetV2 is slower in it (depthwise convs), and further off in
# float16
REDUCED_PRECISION = ("vgg16", "vgg19")


def resolve_precision(precision: str, backbone: str) -> str:
    """`auto`: for the REDUCED_PRECISION backbones, float16 on GPUs that all have tensor cores, bfloat16 on a
    CPU-only machine that computes it natively; else float32.

    A fixed rule rather than a timing at start-up, because precision is part of the feature config:
    a rerun must pick the same store.
    """
    if precision not in PRECISIONS:
        raise InputError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    if canonical_name(backbone) not in REDUCED_PRECISION:
        return "float32"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        capabilities = [
            tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0) for gpu in gpus
        ]
        return "float16" if min(capabilities) >= TENSOR_CORES else "float32"
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "float32"
    return "bfloat16" if re.search(r"\b(avx512_bf16|amx_bf16)\b", flags) else "float32"


def load_backbone(
    name: str,
    weights: Weights,
    image_size: int,
    batch_size: int = 32,
    precision: str = "float32",
    runtime: str = "tensorflow",
    pooling: str = "avg",
) -> Backbone:
    """Build the named backbone with the given weights and `pooling` (see POOLINGS) on `runtime` (see
    `runtimes.RUNTIMES`;
    the command line's default is `auto`); raise BackboneError with a fix if it can't, or InputError for a batch
    that would not fit this machine's memory (`config.check_batch_memory`)."""
    import keras

    from pipeline.extract.config import check_batch_memory, check_options

    check_options(batch_size=batch_size)
    if pooling not in POOLINGS:
        raise BackboneError(f"pooling {pooling!r} is not one of {', '.join(POOLINGS)}")
    _allow_gpu_memory_growth()
    known = available_backbones()
    key = canonical_name(name)
    if key not in known:
        raise BackboneError(f"unknown backbone {name!r}; keras.applications has: {', '.join(sorted(known))}")
    constructor = getattr(keras.applications, known[key])
    preprocess = importlib.import_module(constructor.__module__).preprocess_input
    precision = resolve_precision(precision, name)
    keras.config.set_dtype_policy(POLICIES[precision])
    try:
        with contextlib.redirect_stdout(sys.stderr):  # Keras prints download notes; stdout is for results
            model = constructor(
                include_top=False,
                weights={"imagenet": "imagenet", "none": None, "file": weights.path}[weights.kind],
                input_shape=(image_size, image_size, 3),
                pooling="avg" if pooling == "avg" else None,
            )
            if pooling != "avg":
                model = _grid_pooled(model, grid_side(pooling), image_size)
    except BackboneError:
        raise
    except Exception as error:
        raise BackboneError(_weights_message(name, weights, image_size, error)) from None
    finally:
        keras.config.set_dtype_policy("float32")
    check_batch_memory(model, batch_size, precision, f"{key} at {image_size} px")  # before weights are drawn
    if weights.kind == "none":
        _seeded_random_init(model, RANDOM_WEIGHTS_SEED)
    model.trainable = False
    return Backbone(key, weights, image_size, batch_size, model, preprocess, precision, runtime, pooling)


def _grid_pooled(model, cells: int, image_size: int):
    """`model`'s last feature map averaged over a `cells` x `cells` grid and flattened (cell by cell, channels inside).

    Adaptive pooling (as PyTorch's) averages overlapping near-equal bins of a map that `cells` does not
    divide (3x3 into 2x2: bins of 2x2 sharing the middle row and column), so every input size gives
    cells * cells * channels features.
    """
    import keras

    height, width = model.output.shape[1:3]
    if min(height, width) < cells:
        raise BackboneError(
            f"--pooling grid{cells} needs a last feature map of at least {cells}x{cells}; {model.name} at "
            f"{image_size} px "
            f"gives {height}x{width}: raise --image-size or use a smaller grid (or --pooling avg)"
        )
    pooled = keras.layers.AdaptiveAveragePooling2D((cells, cells))(model.output)
    return keras.Model(model.input, keras.layers.Flatten()(pooled), name=f"{model.name}_grid{cells}")


def check_informative(frames: np.ndarray, features: np.ndarray, backbone: Backbone) -> None:
    """Stop a run whose backbone maps different frames to (nearly) the same vector.

    A random-init MobileNetV2 does that (features ~1e-12, constant across frames): storing them
    would waste the whole extraction. Checked on the first batch, where frames differ.
    """
    if len(frames) < 2 or np.std(frames.astype(np.float32), axis=0).mean() < 1.0:
        return
    spread = float(np.std(features, axis=0).mean())
    scale = float(np.abs(features).mean())
    if spread < 1e-6 or spread < 1e-4 * scale:
        raise BackboneError(
            f"backbone {backbone.name} with weights '{backbone.weights.identity}' gives the same features for "
            "different "
            f"frames (mean spread {spread:.3g}, magnitude {scale:.3g}): they carry no information. Random "
            "weights do this "
            "for MobileNetV2; use --weights imagenet, a trained weights file, or random VGG16 (--backbone "
            "vgg16 --weights none)."
        )


def _seeded_random_init(model, seed: int) -> None:
    """Re-draw every weight from numpy with a fixed seed (Glorot-uniform kernels, as Keras does).

    Keras's own random init depends on how many random ops the process ran before, so two
    processes (dask workers, a rerun) would build different "random" backbones.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.name in ("gamma", "moving_variance"):
            value = np.ones(shape)
        elif len(shape) < 2:
            value = np.zeros(shape)
        else:
            receptive = int(np.prod(shape[:-2]))
            limit = np.sqrt(6.0 / (shape[-2] * receptive + shape[-1] * receptive))
            value = rng.uniform(-limit, limit, shape)
        variable.assign(value.astype(np.float32))


def keras_cache_dir() -> Path:
    """Where Keras looks for downloaded weights: $KERAS_HOME/models, by default ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def _weights_message(name: str, weights: Weights, image_size: int, error: Exception) -> str:
    if weights.kind == "imagenet":
        match = KERAS_WEIGHTS_URL.search(str(error))
        if match:
            return (
                f"ImageNet weights for {name} are not in the Keras cache and cannot be downloaded "
                f"({error_line(error)}). "
                f"Download {match.group(0)} on a machine with a network "
                f"and put it at {keras_cache_dir() / match.group(1)}, "
                "or pass --weights PATH to a weights file."
            )
    if weights.kind == "file":
        return (
            f"cannot load weights file {weights.path} into {name} at {image_size} px (include_top=False): "
            f"{error_line(error)}"
        )
    return f"cannot build backbone {name} at {image_size} px with weights {weights.identity}: {error_line(error)}"


def _allow_gpu_memory_growth() -> None:
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised: the setting can only be made before first use
            pass
