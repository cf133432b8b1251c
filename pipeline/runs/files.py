"""Reading and writing a run's JSON files, checked as they are read: a run may come from anyone.

`inside_run` is the path of a file in a run, refused when it or a folder on the way is a symbolic
link or not a plain file (a received run's `model/config.json -> ~/.ssh/...` would show the user's
file in a report; a FIFO would hang the reader). `read_json`, `read_metrics` and `check_fields`
refuse what the tool does not write (model names become file names and links, so `../x` or
`javascript:...` are refused; a field of the wrong JSON type is named with its file); `best_model`
is the rule that picks the model a run is listed by and `predict` uses by default;
`write_run_summary` writes `run.json`, a run's line in the runs index.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.errors import InputError

NULL = type(None)
NUMBER = (int, float)  # `check_fields`' types of a JSON number; a bool is not one
JSON_TYPES = {dict: "object", list: "array", str: "string", int: "integer", float: "number", NULL: "null"}

MODEL_NAME = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9_-]*"
)  # model names become file names and links: no dots, separators or colons


def write_run_summary(run_dir: str | Path, **fields) -> Path:
    """`run.json`: the run's line in the index (kind, dataset, model, feature_config, metrics...)."""
    fields.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return atomic.write_text(Path(run_dir) / "run.json", json.dumps(fields, indent=1, default=str))


def inside_run(run_dir: str | Path, relative: str) -> Path:
    """`run_dir/relative`, a file to read from a run: InputError naming it when it, or a folder between it and
    `run_dir`, is a symbolic link (a run never holds one: reading through it would read a file outside the run),
    or when it is there but not a plain file. A missing file is returned as is, for the caller to name."""
    path = Path(run_dir)
    for part in Path(relative).parts:
        path = path / part
        if path.is_symlink():
            raise InputError(
                f"{path} is a symbolic link (to {os.readlink(path)}); a run never holds links, so it is not read "
                "through: refusing the run"
            )
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        if not stat.S_ISREG(path.stat().st_mode):
            raise InputError(f"{path} is not a plain file: refusing the run")
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


def read_labels(path: Path) -> list[str]:
    """A run's labels.json: its class names in output order, a non-empty list of distinct strings."""
    labels = read_json(path, list)
    if not labels or not all(isinstance(label, str) for label in labels) or len(set(labels)) < len(labels):
        raise InputError(f"{path} is not a list of distinct class names (strings); refusing the run")
    return labels


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


def check_fields(path: Path, values: dict, types: dict, where: str = "") -> None:
    """InputError naming `path` (and `where`, e.g. "model 'gru': ") unless each key of `types` is in `values` with
    one of its JSON types (a type or a tuple of them: `NUMBER` for a number, `NULL` where null is allowed)."""
    missing = [key for key in types if key not in values]
    if missing:
        raise InputError(
            f"{path}: {where}has no {', '.join(missing)}; it is not a file this tool wrote (retrain the run)"
        )
    for key, allowed in types.items():
        allowed = allowed if isinstance(allowed, tuple) else (allowed,)
        value = values[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            names = [JSON_TYPES.get(kind, kind.__name__) for kind in allowed]
            names = " or ".join(name for name in names if not (name == "integer" and "number" in names))
            raise InputError(
                f"{path}: {where}field {key!r} is a JSON {json_type(value)}, not the {names} this tool writes; "
                "refusing the run (retrain it, or restore the file)"
            )


def json_type(value) -> str:
    """The JSON name of a parsed value's type (`true` is a boolean, not a number)."""
    return "boolean" if isinstance(value, bool) else JSON_TYPES.get(type(value), type(value).__name__)


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
