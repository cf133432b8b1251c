"""The classifiers of stage two: LSTM / GRU sequence models and the order-blind baselines.

Every model maps a batch of fixed-length sequences (features (n, T, D), mask (n, T)) to class
probabilities (n, C), so training, evaluation and reports treat them alike. The sequence models
carry the training split's feature statistics in a Normalization layer, so a saved `.keras` file
takes raw stored features. The baselines ignore frame order on purpose: `mean` pools the valid
frames and fits a logistic regression; `single-frame` fits one on individual frames and lets the
frames of a video vote. When a sequence model beats them, time order is what it learned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from pipeline.core.config import Bound, Config, check_bounds
from pipeline.core.errors import InputError
from pipeline.runs.layout import BASELINES, SEQUENCE_MODELS
from pipeline.store.layout import grid_side

INPUTS = ("features", "deltas")


@dataclass(frozen=True)
class SequenceModelConfig(Config):
    """Architecture of an LSTM / GRU classifier."""

    units: int = 64
    layers: int = 1
    bidirectional: bool = False
    dropout: float = 0.3
    masking: bool = True  # padded steps are skipped by the recurrent layers
    inputs: tuple[str, ...] = ("features",)  # and/or deltas (frame-to-frame differences); see the temporal benchmark
    cell_units: int = (
        0  # > 0: one Dense of this many units shared by every grid cell (and step) before the recurrent layer
    )
    BOUNDS: ClassVar[dict] = {
        "units": Bound(1, 4096),
        "layers": Bound(1, 16),
        "dropout": Bound(0, 1, float, high_open=True),
        "cell_units": Bound(0, 4096, why="0: off"),
    }

    def __post_init__(self):
        check_bounds(self)
        object.__setattr__(self, "inputs", tuple(self.inputs))  # a list from config.json is the same config
        if not self.inputs or not set(self.inputs) <= set(INPUTS) or len(set(self.inputs)) != len(self.inputs):
            raise InputError(
                f"model inputs {','.join(self.inputs) or '(none)'} must be one or both of {', '.join(INPUTS)}"
            )


def build_sequence_model(
    kind: str,
    dim: int,
    n_classes: int,
    mean: np.ndarray,
    std: np.ndarray,
    config: SequenceModelConfig = SequenceModelConfig(),
    delta_std: np.ndarray | None = None,
    cells: int = 1,
):
    """An uncompiled Keras model with inputs {"frames": (None, T, dim), "mask": (None, T)}.

    T is left open, so one model reads sequences of any length. `mean` and `std` (per feature,
    from the training split) standardize the features inside the model; `delta_std` (per feature,
    the training split's root-mean-square delta; None: 1) scales the deltas, keeping a zero delta zero.
    `cells` is the number of grid cells a frame's features hold (`grid_cells`), which `config.cell_units` projects
    alike.
    """
    import keras

    if kind not in SEQUENCE_MODELS:
        raise InputError(f"unknown sequence model {kind!r}; choose from {', '.join(SEQUENCE_MODELS)}")
    frames = keras.Input((None, dim), name="frames")
    mask = keras.Input((None,), dtype="bool", name="mask")
    steps = []
    if "features" in config.inputs:
        steps.append(keras.layers.Normalization(mean=mean, variance=np.square(std), name="standardize")(frames))
    if "deltas" in config.inputs:
        scale = np.ones(dim, np.float32) if delta_std is None else delta_std
        steps.append(
            keras.layers.Normalization(mean=np.zeros_like(scale), variance=np.square(scale), name="standardize_deltas")(
                frame_deltas(frames, mask)
            )
        )
    if config.cell_units:
        if dim % cells:
            raise InputError(f"{dim} features cannot be split into {cells} grid cells")
        width = len(steps) * dim // cells  # a cell's channels, of its features and/or deltas
        if config.cell_units > width:
            raise InputError(
                f"--cell-units {config.cell_units} is more than a grid cell's {width} inputs: the shared layer "
                f"would widen the inputs, not shrink them; give at most {width}"
            )
        steps = [keras.layers.Reshape((-1, cells, dim // cells))(step) for step in steps]  # (n, T, cells, channels)
    x = steps[0] if len(steps) == 1 else keras.layers.Concatenate(name="inputs")(steps)
    x = keras.layers.Dropout(config.dropout)(x)
    if config.cell_units:  # the same weights in every cell: a direction learned in one cell holds in all
        x = keras.layers.Dense(config.cell_units, activation="relu", name="cells")(x)
        x = keras.layers.Reshape((-1, cells * config.cell_units))(x)
    cell = {"lstm": keras.layers.LSTM, "gru": keras.layers.GRU}[kind]
    for layer in range(config.layers):
        recurrent = cell(config.units, return_sequences=layer < config.layers - 1, name=f"{kind}_{layer + 1}")
        if config.bidirectional:
            recurrent = keras.layers.Bidirectional(recurrent, name=f"bi{kind}_{layer + 1}")
        x = recurrent(x, mask=mask if config.masking else None)
        x = keras.layers.Dropout(config.dropout)(x)
    probabilities = keras.layers.Dense(n_classes, activation="softmax", name="classes")(x)
    return keras.Model({"frames": frames, "mask": mask}, probabilities, name=kind)


def frame_deltas(frames, mask):
    """Step t's features minus step t-1's where both steps are valid, else zero (Keras ops, symbolic or eager).

    The first step has no predecessor and a padded step no frame, so their deltas are zero; with
    masking the recurrent layers skip padded steps anyway.
    """
    from keras import ops

    previous = ops.concatenate([frames[:, :1], frames[:, :-1]], axis=1)
    valid = ops.cast(mask, frames.dtype)
    both = valid * ops.concatenate([ops.zeros_like(valid[:, :1]), valid[:, :-1]], axis=1)
    return (frames - previous) * ops.expand_dims(both, -1)


def probabilities(model, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Class probabilities (n, C) of a Keras sequence model or a baseline for features (n, T, D) and mask (n, T).

    Keras models are called eagerly, so batches of any size run without retracing a graph.
    """
    if hasattr(model, "predict_proba"):
        return model.predict_proba(x, mask)
    return np.asarray(model({"frames": x, "mask": mask}, training=False))


def n_classes(model) -> int:
    """The number of classes a sequence model or a baseline predicts."""
    return model.n_classes if hasattr(model, "n_classes") else int(model.output_shape[-1])


def grid_cells(pooling: str) -> int:
    """How many cells a frame's features hold under a feature config's pooling (`backbones.POOLINGS`): 9 for grid3, 1
    for avg."""
    return grid_side(pooling) ** 2


def parse_inputs(text: str) -> tuple[str, ...]:
    """`features`, `deltas` or `features,deltas`, as `--inputs` takes them."""
    inputs = tuple(name.strip() for name in text.split(",") if name.strip())
    return SequenceModelConfig(inputs=inputs).inputs


def input_dim(model) -> int:
    """Feature dimension a saved sequence model expects (its `frames` input)."""
    frames = next(tensor for tensor in model.inputs if tensor.name.startswith("frames"))
    return int(frames.shape[-1])


def model_inputs(model) -> tuple[str, ...]:
    """What a built or saved sequence model reads per step (see `SequenceModelConfig.inputs`), from its layers."""
    names = {layer.name for layer in model.layers}
    return tuple(
        name for name, layer in (("features", "standardize"), ("deltas", "standardize_deltas")) if layer in names
    )


def loaded_architecture(model, config: SequenceModelConfig) -> SequenceModelConfig:
    """`config` with the units, layers, direction and dropout a built or saved sequence model has
    (a model being fine-tuned keeps its architecture, whatever the options asked for)."""
    recurrent = [layer for layer in model.layers if layer.name.removeprefix("bi").startswith(f"{model.name}_")]
    dropout = [layer.rate for layer in model.layers if layer.__class__.__name__ == "Dropout"]
    cell = getattr(recurrent[0], "forward_layer", recurrent[0])
    cells = [layer.units for layer in model.layers if layer.name == "cells"]
    return replace(
        config,
        units=int(cell.units),
        layers=len(recurrent),
        dropout=float(dropout[0]) if dropout else config.dropout,
        bidirectional=recurrent[0].name.startswith("bi"),
        cell_units=int(cells[0]) if cells else 0,
    )


class MeanPoolBaseline:
    """Order-blind: the mean of a video's valid frames, standardized, into a logistic regression."""

    name = "mean"

    def __init__(self, n_classes: int, class_weight: str | None = None, seed: int = 0):
        self.n_classes = n_classes
        self.classifier = _logistic_regression(class_weight, seed)

    def fit(self, x: np.ndarray, mask: np.ndarray, y: np.ndarray) -> "MeanPoolBaseline":
        self.classifier.fit(mean_pool(x, mask), y)
        return self

    def predict_proba(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return _all_classes(self.classifier, self.classifier.predict_proba(mean_pool(x, mask)), self.n_classes)


class SingleFrameBaseline:
    """Order-blind: a logistic regression on single frames; a video's frames vote.

    The returned probabilities are (votes + mean frame probability) / (frames + 1): the majority
    vote decides, the mean probability breaks ties, and each row still sums to one.
    """

    name = "single-frame"

    def __init__(self, n_classes: int, class_weight: str | None = None, seed: int = 0):
        self.n_classes = n_classes
        self.classifier = _logistic_regression(class_weight, seed)

    def fit(self, x: np.ndarray, mask: np.ndarray, y: np.ndarray) -> "SingleFrameBaseline":
        self.classifier.fit(x[mask], np.broadcast_to(y[:, None], mask.shape)[mask])
        return self

    def predict_proba(self, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        frames = np.zeros((*mask.shape, self.n_classes))
        if mask.any():
            frames[mask] = _all_classes(self.classifier, self.classifier.predict_proba(x[mask]), self.n_classes)
        votes = (np.eye(self.n_classes)[frames.argmax(-1)] * mask[..., None]).sum(1)
        counts = np.maximum(mask.sum(1, keepdims=True), 1)
        return (votes + frames.sum(1) / counts) / (counts + 1)


def mean_pool(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean over each sequence's valid steps: (n, T, D), (n, T) -> (n, D)."""
    return (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1)


def build_baseline(kind: str, n_classes: int, class_weight: str | None = None, seed: int = 0):
    """A fresh, unfitted baseline of the given kind (`mean` or `single-frame`)."""
    classes = {MeanPoolBaseline.name: MeanPoolBaseline, SingleFrameBaseline.name: SingleFrameBaseline}
    if kind not in classes:
        raise InputError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")
    return classes[kind](n_classes, class_weight, seed)


# --- helpers ---------------------------------------------------------------------------------


def _logistic_regression(class_weight: str | None, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2000, class_weight=class_weight, random_state=seed)
    )


def _all_classes(classifier, probabilities: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all classes, zero for a class the training split did not have."""
    full = np.zeros((len(probabilities), n_classes))
    full[:, classifier.classes_] = probabilities
    return full
