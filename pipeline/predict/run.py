"""Predict on new videos with a trained run: the only place that runs both stages.

Each video is decoded and embedded with the feature config recorded in the run (same backbone,
weights identity, input size, crop, sampling, precision), turned into a sequence the way training
did, and classified. A run whose weights file is missing or differs (sha256) is refused: features
from other weights would be silently meaningless to the classifier.

With a window (seconds), a long video is classified window by window (each window sampled with
the run's policy), and the per-window probabilities are smoothed with a centred moving average
into a label track, written as CSV and as a PNG timeline (`figures.plot_window_track`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.classify.model_files import ModelFileError, find_model, load_model
from pipeline.classify.models import n_classes, probabilities
from pipeline.classify.sequences import SequenceConfig, fixed_length
from pipeline.core.errors import InputError, PipelineError
from pipeline.extract.backbones import Weights
from pipeline.extract.config import FeatureConfig
from pipeline.extract.decode import Sampling
from pipeline.runs.files import best_model, check_fields, inside_run, read_json, read_labels, read_metrics

log = logging.getLogger(__name__)

FEATURE_KEYS = (
    "backbone",
    "weights",
    "image_size",
    "sampling",
    "max_frames",
    "crop",
)  # what a run's feature config must record (the other fields of FeatureConfig have defaults older runs relied on)
FIELD_TYPES = {"str": str, "int": int}  # FeatureConfig's field annotations -> JSON types


class RunError(PipelineError, ValueError):
    """The run cannot be used for prediction; the message says why and what to do."""


@dataclass
class Run:
    """A trained run, ready to classify feature sequences."""

    path: Path
    model_name: str
    model: object
    labels: list[str]
    features: FeatureConfig  # how the run's features were made: predict makes new videos' features the same way
    sequence: SequenceConfig
    weights: Weights

    @property
    def feature_config(self) -> dict:
        """The feature config as the run records it."""
        return self.features.to_dict()

    def classify(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (C,) for one video's frame features (n, D), as a sequence built the way training built
        it."""
        x, mask = fixed_length(features, self.sequence)
        return probabilities(self.model, x[None], mask[None])[0]


def load_run(run_dir: str | Path, model: str | None = None, weights: str | None = None) -> Run:
    """Load a run's model, labels and feature config; check the weights it was trained on.

    `model` picks one of the run's models (default: the sequence model with the best validation
    accuracy). `weights` is the weights file to use when the run's is not where training found it.
    The model is loaded as data (`model_files.load_model`): a run directory never runs code, and
    no file is read through a link out of it (`inside_run`). Everything a video's decoding and
    classification depend on is checked here, before any video is decoded: the feature config
    (a `FeatureConfig`, so a bad crop or size is refused), the sequence length (at most the frames
    per video the feature config keeps), and labels for every output of the model.
    """
    run_dir = Path(run_dir)
    config_path = inside_run(run_dir, "model/config.json")
    if not config_path.is_file():
        raise RunError(
            f"{run_dir} is not a trained run (no model/config.json); train one with `python -m pipeline train`"
        )
    config = read_json(config_path, dict)
    labels_path = inside_run(run_dir, "model/labels.json")
    labels = read_labels(labels_path)
    features, sequence = _checked_config(config_path, config)
    name = model or _best_model(run_dir)
    try:
        path = find_model(run_dir / "model", name)
        loaded = load_model(inside_run(run_dir, f"model/{path.name}"))
    except ModelFileError as error:
        raise RunError(f"run {run_dir}: {error}") from None
    if n_classes(loaded) != len(labels):
        raise RunError(
            f"{labels_path} names {len(labels)} classes, but model {name} ({path}) has {n_classes(loaded)} outputs: "
            "the labels are not this model's; restore the run's labels.json or retrain"
        )
    store_path = config.get("store") if isinstance(config.get("store"), str) else ""
    return Run(run_dir, name, loaded, labels, features, sequence, _run_weights(features, store_path, weights))


# --- helpers ---------------------------------------------------------------------------------


def _checked_config(path: Path, config: dict) -> tuple[FeatureConfig, SequenceConfig]:
    """The feature config and sequence config of a run's config.json, or RunError naming the file and field."""
    recorded, sequence = config.get("feature_config"), config.get("sequence")
    missing = [key for key in FEATURE_KEYS if key not in recorded] if isinstance(recorded, dict) else ["feature_config"]
    if not isinstance(sequence, dict):
        missing.append("sequence")
    if missing:
        raise RunError(f"{path} has no usable {', '.join(missing)}: it is not a training run's config; retrain the run")
    fields = {field.name: field for field in dataclasses.fields(FeatureConfig)}
    unknown = [key for key in recorded if key not in fields]
    if unknown:
        raise RunError(
            f"{path}: feature_config has {', '.join(map(repr, unknown))}, which this version does not know: the run's "
            "features may be made in a way it cannot repeat; predict with the version that trained the run"
        )
    check_fields(path, recorded, {key: FIELD_TYPES[fields[key].type] for key in recorded}, "feature_config ")
    try:
        features = FeatureConfig(**recorded)
    except InputError as error:
        raise RunError(f"{path}: feature_config: {error}; the run cannot be used (retrain it)") from None
    try:
        sequence = SequenceConfig(**sequence)
    except (TypeError, ValueError) as error:
        raise RunError(f"{path}: its sequence settings {sequence} are not usable: {error}") from None
    most = Sampling.parse(features.sampling, features.max_frames).most_frames
    if sequence.seq_len > most:
        raise RunError(
            f"{path}: sequence seq_len {sequence.seq_len} is more than the {most} frames per video its feature "
            f"config keeps (sampling {features.sampling}, max_frames {features.max_frames}); training never writes "
            "that: the run is not usable (retrain it)"
        )
    return features, sequence


def _best_model(run_dir: Path) -> str:
    path = inside_run(run_dir, "model/metrics.json")
    if not path.is_file():
        raise RunError(f"{path.parent} has no metrics.json to pick a model from; pass --model")
    return best_model(read_metrics(path))


def _run_weights(features: FeatureConfig, store_path: str, override: str | None) -> Weights:
    """The run's weights: `imagenet`/`none` by name; a file must exist and match the recorded sha256."""
    identity = features.weights
    if not identity.startswith("sha256:"):
        return Weights(identity)
    recorded = ""
    if not override and store_path and Path(store_path).is_file():
        with contextlib.suppress(OSError, ValueError, PipelineError):  # the run names a store that is not one now
            recorded = store.read_attrs(store_path).get("weights_path", "")
    path = override or (recorded if isinstance(recorded, str) else "")
    if not path or not Path(path).is_file():
        raise RunError(
            f"the run was trained on features from a weights file ({identity}) that is not available"
            f"{f' at {path}' if path else ''}; pass --weights PATH to that file"
        )
    weights = Weights.parse(path)
    if weights.identity != identity:
        raise RunError(
            f"weights file {path} has {weights.identity}, but the run was trained on features from {identity}: "
            "its features would not match the classifier; pass --weights with the original file"
        )
    return weights
