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
    """The model a run is listed by and predicts with by default, chosen on the validation split
    (never on the test split, which only measures it):

    - among the sequence models (all models when the run has none), the one with the best
      validation accuracy, when its 95% interval (`val_accuracy_interval`, Wilson) does not
      overlap any other's: the difference is outside the noise;
    - otherwise (intervals that overlap, an empty validation split) the first, in the order the
      run trained them (`--models`: lstm before gru), of the models whose intervals overlap the
      best one's: a difference inside the noise picks nothing (`validation_choice`);
    - for a run of an earlier version, which stores no intervals: the best validation accuracy
      (the first on a tie; none counts as 0).

    Overlapping Wilson intervals is the conservative test (two models can differ significantly
    with touching intervals); the run's page shows both intervals and says when they overlap.
    """
    choice = validation_choice(metrics)
    if choice:
        return choice[0]

    def rank(name: str) -> tuple[bool, float]:
        values = metrics[name]
        val_accuracy = values.get("val_accuracy")
        return values.get("kind") == "sequence", val_accuracy if is_number(val_accuracy) else 0.0

    return max(metrics, key=rank)


def is_number(value) -> bool:
    """A JSON number (not a bool, which Python counts as an int)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validation_choice(metrics: dict) -> tuple[str, list[str]] | None:
    """`best_model`'s choice on a run that stores validation intervals, with the models it could not
    tell apart: (chosen, tied), tied in training order and holding chosen; None for a run without
    intervals (an earlier version's)."""
    pool = [name for name in metrics if metrics[name].get("kind") == "sequence"] or list(metrics)
    if not all("val_accuracy_interval" in metrics[name] for name in pool):
        return None

    def score(name: str) -> float:
        value = metrics[name].get("val_accuracy")
        return value if is_number(value) else -1.0

    top = max(pool, key=score)  # the first of equal scores
    tied = [name for name in pool if name == top or _overlap(metrics[name], metrics[top])]
    return tied[0], tied


def _overlap(first: dict, second: dict) -> bool:
    """Whether two models' validation intervals overlap; True where one is missing (nothing to tell them apart)."""
    a, b = first.get("val_accuracy_interval"), second.get("val_accuracy_interval")
    if not (isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == 2):
        return True
    if not all(is_number(value) for value in (*a, *b)):
        return True
    return a[0] <= b[1] and b[0] <= a[1]
