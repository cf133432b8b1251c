"""Reading and writing a run's JSON files, checked as they are read: a run may come from anyone.

`read_json` and `read_metrics` refuse what the tool does not write (model names become file names
and links, so `../x` or `javascript:...` are refused); `best_model` is the rule that picks the
model a run is listed by and `predict` uses by default; `write_run_summary` writes `run.json`, a
run's line in the runs index.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core.errors import InputError

MODEL_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9_-]*"
)  # model names become file names and links: no dots, separators or colons


def write_run_summary(run_dir: str | Path, **fields) -> Path:
    """`run.json`: the run's line in the index (kind, dataset, model, feature_config, metrics...)."""
    path = Path(run_dir) / "run.json"
    fields.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path.write_text(json.dumps(fields, indent=1, default=str))
    return path


def read_metrics(path: Path) -> dict:
    """A run's metrics.json: an object of models, each an object of metrics, named by plain names
    (a name becomes file names and links, so `../x`, `/tmp/x` or `javascript:...` are refused)."""
    metrics = read_json(path, dict)
    for name, values in metrics.items():
        if not MODEL_NAME.fullmatch(name):
            raise InputError(
                f"{path}: {name!r} is not a model name (letters, digits, '-' and '_' only); refusing the run"
            )
        if not isinstance(values, dict):
            raise InputError(f"{path}: the metrics of model {name!r} are not a JSON object")
    if not metrics:
        raise InputError(f"{path} lists no models")
    return metrics


def read_json(path: Path, kind: type):
    """The JSON value of `path`, which must be a `kind` (dict or list); ValueError naming the file otherwise."""
    try:
        value = json.loads(path.read_text())
    except ValueError as error:
        raise InputError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, kind):
        raise InputError(
            f"{path} holds a JSON {type(value).__name__}, not the {'object' if kind is dict else 'array'} "
            "this tool writes"
        )
    return value


def best_model(metrics: dict) -> str:
    """The model a run is listed by and predicts with by default: the sequence model with the best
    validation accuracy (the first on a tie), or the best model when the run has no sequence model."""

    def rank(name: str) -> tuple[bool, float]:
        values = metrics[name]
        val_accuracy = values.get("val_accuracy")
        return values.get("kind") == "sequence", val_accuracy if is_number(val_accuracy) else 0.0

    return max(metrics, key=rank)


def is_number(value) -> bool:
    """A JSON number (not a bool, which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)
