"""Where the frozen backbone runs: TensorFlow, or a CPU inference runtime (OpenVINO, ONNX Runtime).

On a nearly idle CPU, OpenVINO and ONNX Runtime run MobileNetV2 faster than TensorFlow's frozen
graph (the README's benchmark has the measured ratios), with embeddings equal to TensorFlow's within
a tolerance the tests check. The runtime is therefore not part of a store's feature identity; the store records which
runtime made it.

  auto         TensorFlow when it sees a GPU; on a CPU the fastest installed runtime
               (CPU_PREFERENCE, measured), else TensorFlow.
  tensorflow   TensorFlow's frozen graph, always available.
  openvino     OpenVINO (`openvino.convert_model` on the traced TensorFlow function).
  onnxruntime  ONNX Runtime on the tf2onnx export of the traced TensorFlow function.

A runtime computes float32 only: bfloat16 (VGG on CPUs with native bfloat16) runs in TensorFlow,
whose mixed-precision arithmetic defines what a bfloat16 store holds. A runtime that is missing, or
that cannot convert a backbone, or whose converted model does not reproduce TensorFlow's features,
falls back to TensorFlow with one log line that says why; one asked for by name and not installed
is an error that names the install command.

Converted models are cached on disk (`cache_dir()`), keyed by backbone, weights identity, input
size, precision and runtime and converter versions, so a rerun or a dask worker loads instead of
converting. An entry is written in a temporary folder and renamed into place, so processes that
convert at the same time never see half an entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from pipeline.core.errors import BackboneError, InputError, error_line
from pipeline.core.hashing import file_sha256

log = logging.getLogger(__name__)

RUNTIMES = ("auto", "tensorflow", "openvino", "onnxruntime")
# Fastest first, MobileNetV2 at 224 px on this project's 2-core VM (see the README's benchmark).
CPU_PREFERENCE = ("openvino", "onnxruntime")
NEEDS = {"openvino": ("openvino",), "onnxruntime": ("onnxruntime", "tf2onnx")}
INSTALL = {
    "openvino": "pip install 'video-feature-pipeline[cpu]'  (or: pip install openvino)",
    "onnxruntime": "pip install 'video-feature-pipeline[onnxruntime]'  (or: pip install onnxruntime tf2onnx)",
}
ONNX_OPSET = 17
CHECK_TOLERANCE = 1e-4  # largest relative difference from TensorFlow's features a converted model may have
CACHE_FORMAT = 1  # bump when what an entry holds changes


class RuntimeUnavailable(BackboneError):
    """A runtime asked for by name is not installed; the message gives the install command."""


def choose_runtime(requested: str, precision: str) -> tuple[str, str]:
    """The runtime to try for `requested`, and why it is TensorFlow instead ("" when nothing to say)."""
    if requested not in RUNTIMES:
        raise InputError(f"runtime {requested!r} is not one of {', '.join(RUNTIMES)}")
    if requested == "tensorflow":
        return "tensorflow", ""
    if requested != "auto":
        missing = missing_modules(requested)
        if missing:
            raise RuntimeUnavailable(
                f"--runtime {requested}: not installed ({missing}); install it with {INSTALL[requested]}, "
                "or use --runtime auto or tensorflow"
            )
        if precision != "float32":
            return "tensorflow", f"{requested} computes float32 only, and this backbone runs in {precision}"
        return requested, ""
    if _gpu_visible():
        return "tensorflow", ""  # the GPU path: no log line, nothing is missing
    if precision != "float32":
        return "tensorflow", f"the CPU runtimes compute float32 only, and this backbone runs in {precision}"
    missing = {name: missing_modules(name) for name in CPU_PREFERENCE}
    for name in CPU_PREFERENCE:
        if not missing[name]:
            return name, ""
    return "tensorflow", (
        "no CPU inference runtime is installed ("
        + "; ".join(f"{n}: {m}" for n, m in missing.items())
        + f"); for 2-3x faster CPU features: {INSTALL[CPU_PREFERENCE[0]]}"
    )


def load_runtime(backbone, requested: str) -> tuple[str, object]:
    """(runtime name, batch function uint8 frames -> float32 features) for `backbone`, falling back to TensorFlow."""
    runtime, reason = choose_runtime(requested, backbone.precision)
    if runtime != "tensorflow":
        try:
            run = _cached_runner(backbone, runtime)
            log.info("runtime: %s", runtime)
            return runtime, run
        except Exception as error:  # any failure of a converter or runtime: the TensorFlow path still works
            reason = f"{runtime} cannot run {backbone.name}: {error_line(error)}"
    if reason:
        log.warning("runtime: TensorFlow, because %s", reason)
    return "tensorflow", backbone.tensorflow_batch_function()


def cache_dir() -> Path:
    """$VIDEO_PIPELINE_CACHE, else $XDG_CACHE_HOME/video-feature-pipeline, else ~/.cache/video-feature-pipeline."""
    if os.environ.get("VIDEO_PIPELINE_CACHE"):
        return Path(os.environ["VIDEO_PIPELINE_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "video-feature-pipeline"


def cache_key(backbone, runtime: str) -> dict:
    """Everything a converted model depends on."""
    return {
        "format": CACHE_FORMAT,
        "backbone": backbone.name,
        "weights": backbone.weights.identity,
        "image_size": backbone.image_size,
        "precision": backbone.precision,
        "runtime": runtime,
        "versions": {name: _version(name) for name in (*NEEDS[runtime], "keras", "tensorflow")},
        **({} if backbone.pooling == "avg" else {"pooling": backbone.pooling}),
    }  # avg left out: caches made before pooling stay valid


def cache_entry(backbone, runtime: str) -> Path:
    """The folder of `backbone`'s converted model for `runtime`, e.g.
    runtimes/openvino/mobilenetv2-imagenet-224px-<hash>."""
    key = cache_key(backbone, runtime)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    weights = backbone.weights.identity.replace("sha256:", "w")[:9]
    return (
        cache_dir()
        / "runtimes"
        / runtime
        / f"{backbone.name}-{weights}-{backbone.image_size}px-{backbone.precision}-{digest}"
    )


def missing_modules(runtime: str) -> str:
    """ "" when `runtime`'s modules import, else what is missing."""
    import importlib

    problems = []
    for module in NEEDS[runtime]:
        try:
            importlib.import_module(module)
        except Exception as error:  # ImportError, or a broken install raising anything on import
            problems.append(error_line(error))
    return "; ".join(problems)


# --- helpers ---------------------------------------------------------------------------------


def _cached_runner(backbone, runtime: str):
    """Load the cached converted model, converting (and checking, and caching) it first when there is none."""
    entry = cache_entry(backbone, runtime)
    if (entry / "key.json").is_file():
        try:
            _check_files(entry)
            return RUNNERS[runtime](entry, backbone)
        except Exception as error:  # e.g. a damaged entry: convert again and replace it
            log.warning("cached %s model at %s is unusable (%s); converting again", runtime, entry, error_line(error))
    damaged = entry.exists()  # unusable, or a folder someone else made: replaced below
    log.info(
        "converting %s (%s, %d px) for %s; cached at %s",
        backbone.name,
        backbone.weights.identity,
        backbone.image_size,
        runtime,
        entry,
    )
    entry.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=entry.parent, prefix=f".{entry.name}.tmp-"))
    try:
        CONVERTERS[runtime](backbone, scratch)
        _check_same_features(backbone, RUNNERS[runtime](scratch, backbone))
        files = {path.name: file_sha256(path) for path in sorted(scratch.iterdir())}
        (scratch / "key.json").write_text(
            json.dumps({**cache_key(backbone, runtime), "files": files}, indent=1, sort_keys=True)
        )
        _publish(scratch, entry, damaged)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return RUNNERS[runtime](entry, backbone)


def _check_files(entry: Path) -> None:
    """Refuse an entry whose files differ from what was checked against TensorFlow when it was converted."""
    recorded = json.loads((entry / "key.json").read_text()).get("files")
    if not recorded:
        raise BackboneError("it records no checksums (made by an earlier version)")
    for name, digest in recorded.items():
        if file_sha256(entry / name) != digest:
            raise BackboneError(f"{name} differs from the file that was checked against TensorFlow")


def _publish(scratch: Path, entry: Path, damaged: bool) -> None:
    """Rename the finished entry into place (a damaged one is moved aside first); a twin published meanwhile is kept."""
    if damaged and entry.exists():
        aside = entry.with_name(f".{entry.name}.old-{os.getpid()}")
        os.rename(entry, aside)
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(scratch, entry)
    except OSError:  # another process published the same entry first: it holds the same model
        if not (entry / "key.json").is_file():
            raise


def _check_same_features(backbone, run) -> None:
    """Refuse a converted model whose features differ from TensorFlow's: the store's identity depends on them."""
    frames = np.random.default_rng(0).integers(
        0, 256, (backbone.batch_size, backbone.image_size, backbone.image_size, 3), dtype=np.uint8
    )
    reference = backbone.tensorflow_graph(None)(frames[:2]).numpy()  # two frames: VGG16 in TensorFlow is slow
    got = np.asarray(run(frames))[:2]
    error = float(np.abs(got - reference).max() / max(float(np.abs(reference).max()), 1e-30))
    if not error <= CHECK_TOLERANCE:
        raise BackboneError(
            f"its features differ from TensorFlow's by {error:.2g} relative (more than {CHECK_TOLERANCE:g})"
        )


def _threads() -> int:
    """The CPU threads TensorFlow was given (0: all), so a dask worker's share of cores holds for the runtime too."""
    import tensorflow as tf

    return tf.config.threading.get_intra_op_parallelism_threads()


def _convert_openvino(backbone, folder: Path) -> None:
    import openvino as ov

    model = ov.convert_model(backbone.tensorflow_graph(None))
    ov.save_model(model, folder / "model.xml", compress_to_fp16=False)  # fp16 weights would change the features


def _run_openvino(folder: Path, backbone):
    """A compiled OpenVINO model at the backbone's fixed batch size, float32 maths (not bf16, its default on AMX CPUs).

    The LATENCY hint (one stream using every thread) with a static batch measured fastest here, ahead
    of a dynamic batch and of two streams of half batches (README, *Measured design choices*).
    """
    import openvino as ov

    core = ov.Core()
    model = core.read_model(folder / "model.xml")
    model.reshape([backbone.batch_size, backbone.image_size, backbone.image_size, 3])
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    if _threads():
        config["INFERENCE_NUM_THREADS"] = _threads()
    request = core.compile_model(model, "CPU", config).create_infer_request()
    return lambda frames: request.infer({0: frames})[0].copy()


def _convert_onnxruntime(backbone, folder: Path) -> None:
    import tensorflow as tf
    import tf2onnx

    logging.getLogger("tf2onnx").setLevel(logging.WARNING)  # its optimiser's statistics are not the user's business
    graph = backbone.tensorflow_graph(None)
    spec = tf.TensorSpec((None, backbone.image_size, backbone.image_size, 3), tf.uint8, name="frames")
    tf2onnx.convert.from_function(
        graph, input_signature=[spec], opset=ONNX_OPSET, output_path=str(folder / "model.onnx")
    )


def _run_onnxruntime(folder: Path, backbone):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = _threads()
    options.log_severity_level = 3  # its warnings about unused initialisers are not the user's business
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda frames: session.run(None, {name: frames})[0]


CONVERTERS = {"openvino": _convert_openvino, "onnxruntime": _convert_onnxruntime}
RUNNERS = {"openvino": _run_openvino, "onnxruntime": _run_onnxruntime}


def _gpu_visible() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
