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

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import store
from pipeline.classify.model_files import ModelFileError, find_model, load_model
from pipeline.classify.models import probabilities
from pipeline.classify.sequences import SequenceConfig, fixed_length
from pipeline.core.errors import PipelineError
from pipeline.extract.backbones import Weights
from pipeline.runs.files import best_model, read_json, read_metrics

log = logging.getLogger(__name__)

FEATURE_KEYS = (
    "backbone",
    "weights",
    "image_size",
    "sampling",
    "max_frames",
    "crop",
)  # what predict reads of a run's feature config


class RunError(PipelineError, ValueError):
    """The run cannot be used for prediction; the message says why and what to do."""


@dataclass
class Run:
    """A trained run, ready to classify feature sequences."""

    path: Path
    model_name: str
    model: object
    labels: list[str]
    feature_config: dict
    sequence: SequenceConfig
    weights: Weights

    def classify(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (C,) for one video's frame features (n, D), as a sequence built the way training built
        it."""
        x, mask = fixed_length(features, self.sequence)
        return probabilities(self.model, x[None], mask[None])[0]


def load_run(run_dir: str | Path, model: str | None = None, weights: str | None = None) -> Run:
    """Load a run's model, labels and feature config; check the weights it was trained on.

    `model` picks one of the run's models (default: the sequence model with the best validation
    accuracy). `weights` is the weights file to use when the run's is not where training found it.
    The model is loaded as data (`model_files.load_model`): a run directory never runs code.
    """
    run_dir = Path(run_dir)
    model_dir = run_dir / "model"
    if not (model_dir / "config.json").is_file():
        raise RunError(
            f"{run_dir} is not a trained run (no model/config.json); train one with `python -m pipeline train`"
        )
    config = read_json(model_dir / "config.json", dict)
    labels = read_json(model_dir / "labels.json", list)
    if not labels or not all(isinstance(label, str) for label in labels):
        raise RunError(f"{model_dir / 'labels.json'} is not a list of class names")
    feature_config, sequence = _checked_config(model_dir / "config.json", config)
    name = model or _best_model(model_dir)
    try:
        loaded = load_model(find_model(model_dir, name))
    except ModelFileError as error:
        raise RunError(f"run {run_dir}: {error}") from None
    store_path = config.get("store") if isinstance(config.get("store"), str) else ""
    return Run(
        run_dir, name, loaded, labels, feature_config, sequence, _run_weights(feature_config, store_path, weights)
    )


# --- helpers ---------------------------------------------------------------------------------


def _checked_config(path: Path, config: dict) -> tuple[dict, SequenceConfig]:
    """The feature config and sequence config of a run's config.json, or RunError naming the file."""
    feature_config, sequence = config.get("feature_config"), config.get("sequence")
    missing = (
        [key for key in FEATURE_KEYS if key not in feature_config]
        if isinstance(feature_config, dict)
        else ["feature_config"]
    )
    if not isinstance(sequence, dict):
        missing.append("sequence")
    if missing or not isinstance(feature_config["weights"], str):
        raise RunError(
            f"{path} has no usable {', '.join(missing) or 'weights'}: it is not a training run's config; "
            "retrain the run"
        )
    try:
        return feature_config, SequenceConfig(**sequence)
    except (TypeError, ValueError) as error:
        raise RunError(f"{path}: its sequence settings {sequence} are not usable: {error}") from None


def _best_model(model_dir: Path) -> str:
    if not (model_dir / "metrics.json").is_file():
        raise RunError(f"{model_dir} has no metrics.json to pick a model from; pass --model")
    return best_model(read_metrics(model_dir / "metrics.json"))


def _run_weights(feature_config: dict, store_path: str, override: str | None) -> Weights:
    """The run's weights: `imagenet`/`none` by name; a file must exist and match the recorded sha256."""
    identity = feature_config["weights"]
    if not identity.startswith("sha256:"):
        return Weights(identity)
    recorded = ""
    if not override and store_path and Path(store_path).is_file():
        recorded = store.read_attrs(store_path).get("weights_path", "")
    path = override or recorded
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
