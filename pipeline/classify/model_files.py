"""Saved models of a run, stored as data and loaded without running code from the file.

Run directories travel between people, so loading one must never unpickle: a pickle (joblib,
`.pkl`, an object array in `.npz`) runs whatever code its author put in it. Sequence models are
`.keras` files loaded with `safe_mode=True`, which refuses serialized Python code (Lambda layers);
the order-blind baselines are `.npz` files of plain numeric arrays (scaler statistics,
coefficients, intercepts, classes), read with `allow_pickle=False` and put back into fresh
scikit-learn objects. Every loader of a run's model goes through `load_model`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.classify.models import build_baseline
from pipeline.core import atomic
from pipeline.core.errors import PipelineError
from pipeline.runs.layout import BASELINES

MODEL_SUFFIXES = (".keras", ".npz")  # the only model files a run holds and this module loads
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")  # earlier versions' baselines: named in errors, never loaded
BASELINE_FORMAT = 1


class ModelFileError(PipelineError, ValueError):
    """A model file that is not loaded; the message names the file and what to do."""


def model_files(model_dir: str | Path) -> dict[str, Path]:
    """The loadable models of a run's `model/` folder: name -> file."""
    return {
        path.stem: path
        for path in sorted(Path(model_dir).glob("*"))
        if path.suffix in MODEL_SUFFIXES and path.is_file()
    }


def find_model(model_dir: str | Path, name: str) -> Path:
    """The file of model `name` in `model_dir`; a pickled one from an earlier version is refused by name."""
    found = model_files(model_dir)
    if Path(name).name != name or name.startswith("."):
        raise ModelFileError(f"{name!r} is not a model name (it would point outside {model_dir})")
    if name in found:
        return found[name]
    pickled = [path for path in Path(model_dir).glob(f"{name}.*") if path.suffix in PICKLE_SUFFIXES]
    if pickled:
        raise ModelFileError(
            f"{pickled[0]} is a pickle (a baseline saved by an earlier version); pickles can run code, so it "
            f"is not loaded: retrain the model with `python -m pipeline train --model {name}`"
        )
    raise ModelFileError(f"{model_dir} has no model {name!r}; it has {', '.join(found) or 'none'}")


def load_model(path: str | Path):
    """A sequence model (`.keras`, safe mode) or a baseline (`.npz`, no pickles); anything else is refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if path.suffix == ".keras":
        import keras

        try:
            return keras.models.load_model(path, safe_mode=True)  # refuses Lambda layers and other serialized code
        except Exception as error:
            raise ModelFileError(f"{path} is not a Keras model this tool can load safely: {error}") from error
    if path.suffix == ".npz":
        return _load_baseline(path)
    raise ModelFileError(
        f"{path}: only .keras (sequence models) and .npz (baselines) model files are loaded; "
        f"{path.suffix or 'a file without suffix'} files are not, since they may run code when loaded"
    )


def save_baseline(model, path: str | Path) -> Path:
    """Write a fitted baseline as plain arrays (see `_load_baseline` for the layout)."""
    scaler, regression = model.classifier[0], model.classifier[-1]
    path = Path(path)
    with atomic.replacing(path) as temporary, temporary.open("wb") as file:
        np.savez(
            file,
            format=np.int64(BASELINE_FORMAT),
            kind=np.str_(model.name),
            n_classes=np.int64(model.n_classes),
            scaler_mean=scaler.mean_,
            scaler_var=scaler.var_,
            scaler_scale=scaler.scale_,
            n_samples_seen=np.asarray(scaler.n_samples_seen_),
            coef=regression.coef_,
            intercept=regression.intercept_,
            classes=regression.classes_,
        )
    return path


def _load_baseline(path: Path):
    """A baseline from the arrays `save_baseline` wrote, refitted into fresh scikit-learn objects."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except Exception as error:  # a pickle, an object array, a damaged file
        raise ModelFileError(
            f"{path} is not a baseline this tool wrote (plain arrays only, pickles are never loaded): {error}"
        ) from error
    missing = {
        "format",
        "kind",
        "n_classes",
        "scaler_mean",
        "scaler_var",
        "scaler_scale",
        "n_samples_seen",
        "coef",
        "intercept",
        "classes",
    } - set(arrays)
    kind = str(arrays.get("kind", ""))
    if missing or kind not in BASELINES or int(arrays["format"]) != BASELINE_FORMAT:
        raise ModelFileError(
            f"{path} is not a baseline this tool wrote (format {BASELINE_FORMAT}, kind one of "
            f"{', '.join(BASELINES)}): {'missing ' + ', '.join(sorted(missing)) if missing else f'kind {kind!r}'}"
        )
    coef, classes = arrays["coef"].astype(np.float64), arrays["classes"].astype(np.int64)
    dim = len(arrays["scaler_mean"])
    if (
        coef.ndim != 2
        or coef.shape[1] != dim
        or len(arrays["intercept"]) != len(coef)
        or len(coef) != (1 if len(classes) == 2 else len(classes))
    ):
        raise ModelFileError(
            f"{path}: inconsistent array shapes (coef {coef.shape}, {len(classes)} classes, {dim} features)"
        )
    model = build_baseline(kind, int(arrays["n_classes"]))
    scaler, regression = model.classifier[0], model.classifier[-1]
    scaler.mean_, scaler.var_, scaler.scale_ = (
        arrays[key].astype(np.float64) for key in ("scaler_mean", "scaler_var", "scaler_scale")
    )
    scaler.n_samples_seen_, scaler.n_features_in_ = arrays["n_samples_seen"], dim
    regression.coef_, regression.intercept_, regression.classes_ = coef, arrays["intercept"].astype(np.float64), classes
    regression.n_features_in_ = dim
    return model
