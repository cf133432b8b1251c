"""The runs index, `reports/index.html`: every run side by side, read from each run's `run.json`.

One table per kind of run, sortable and filterable in the browser (`sortable`: a small inline
script, no server), one column per headline metric. Written only into a report root the tool made
(`folders.claim_report_root`), replaced in one step.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from urllib.parse import quote

from pipeline.core import atomic
from pipeline.core.errors import InputError
from pipeline.report import sortable
from pipeline.report.pages import page
from pipeline.runs import folders
from pipeline.runs.files import inside_run, is_number

log = logging.getLogger(__name__)


def write_index(reports_root: str | Path = "reports") -> Path | None:
    """`reports/index.html`: every run side by side, newest first, linking each run's page; one sortable
    table per kind of run, one column per headline metric (with its 95% interval where the run has one).

    Written only into a report root (see `folders.claim_report_root`); elsewhere, e.g. over a page
    the user wrote, nothing is written, a warning names the file, and None is returned.
    """
    root = Path(reports_root)
    refused = folders.claim_report_root(root)
    if refused:
        log.warning("not writing the runs index %s: %s", root / "index.html", refused)
        return None
    runs = sorted(
        (row for row in map(_index_row, _below(root, "*/run.json")) if row), key=lambda row: row["date"], reverse=True
    )
    kinds = list(dict.fromkeys(row["kind"] for row in runs))
    body = (
        sortable.filter_box("filter the runs: any text, e.g. gru, vgg16 or a date")
        + "".join(_kind_table(kind, [row for row in runs if row["kind"] == kind]) for kind in kinds)
        + sortable.script()
        if runs
        else "<p>No runs yet.</p>"
    )
    path = root / "index.html"
    atomic.write_text(
        path, page("Runs", body)
    )  # replaced in one step: two runs finishing at once do not mix their pages
    return path


COLUMNS = {  # headings of the metrics runs write into run.json (others are shown by their key)
    "accuracy": "test accuracy",
    "macro_f1": "macro-F1",
    "time_order": "time order (accuracy gained)",
    "time_order_p": "McNemar p",
    "val_accuracy": "val accuracy",
    "test_videos": "test videos",
}
TEXT_COLUMNS = (("dataset", "dataset"), ("model", "model"), ("features", "features"))


def _kind_table(kind: str, rows: list[dict]) -> str:
    """One kind's runs (training, ConvLSTM, ...) as a sortable table: run, what it is, each metric, date."""
    metrics = list(dict.fromkeys(key for row in rows for key in row["metrics"] if not key.endswith("_interval")))
    columns = [("run", "run"), *TEXT_COLUMNS, *((key, COLUMNS.get(key, key.replace("_", " "))) for key in metrics)]
    table = [
        [
            sortable.Cell(f"<a href='{html.escape(quote(row['name']))}/index.html'>{html.escape(row['name'])}</a>"),
            *(sortable.Cell(html.escape(row[key])) for key, _ in TEXT_COLUMNS[:1]),
            sortable.Cell(html.escape(row["model"]) + _others(row["others"])),
            *(sortable.Cell(html.escape(row[key])) for key, _ in TEXT_COLUMNS[2:]),
            *(_metric_cell(key, row["metrics"]) for key in metrics),
            sortable.Cell(html.escape(row["date"])),
        ]
        for row in rows
    ]
    return f"<h2>{html.escape(kind or 'other')} runs ({len(rows)})</h2>" + sortable.sortable_table(
        [*columns, ("date", "date")], table
    )


def _metric_cell(key: str, metrics: dict) -> sortable.Cell:
    """A metric's cell: its value (sorted as a number), and its interval underneath where run.json has one."""
    value, interval = metrics.get(key), metrics.get(f"{key}_interval")
    if not is_number(value):
        return sortable.Cell("" if value is None else html.escape(str(value)))
    scores = key.endswith("accuracy") or key in ("macro_f1", "time_order")
    form = "{:+.3f}" if key == "time_order" else "{:.3f}" if scores else "{:.4g}"
    text = "&lt; 0.001" if key.endswith("_p") and value < 0.001 else html.escape(form.format(value))
    if isinstance(interval, list) and len(interval) == 2 and all(map(is_number, interval)):
        low, high = (form.replace(".3f", ".2f").format(bound) for bound in interval)
        text += f"<br><span class='muted'>[{html.escape(low)},&nbsp;{html.escape(high)}]</span>"
    return sortable.Cell(text, float(value))


def _others(others) -> str:
    """The other models of a run with their test accuracies, under the listed model's name."""
    if not isinstance(others, dict) or not others:
        return ""
    shown = " · ".join(f"{name} {value:.3f}" if is_number(value) else str(name) for name, value in others.items())
    return f"<br><span class='muted'>{html.escape(shown)}</span>"


def _index_row(summary: Path) -> dict | None:
    """One run's line of the index, as plain text and numbers (escaped where shown); None (and a warning) for a
    broken run.json."""
    try:
        data = json.loads(inside_run(summary.parents[1], f"{summary.parent.name}/run.json").read_text())
        if not isinstance(data, dict):
            raise InputError("not a JSON object")
    except (OSError, ValueError) as error:
        log.warning("%s is not listed in the runs index: %s", summary, error)
        return None
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    config = data.get("feature_config") if isinstance(data.get("feature_config"), dict) else {}
    return {
        "name": summary.parent.name,
        "kind": str(data.get("kind", "")),
        "dataset": str(data.get("dataset", "")),
        "model": str(data.get("model", "")),
        "features": " ".join(
            f"{config[k]}" for k in ("backbone", "weights", "image_size", "sampling", "pooling") if k in config
        ),
        "metrics": {str(key): value for key, value in metrics.items()},
        "others": data.get("other_models"),
        "date": str(data.get("created", "")),
    }


def training_runs(reports_root: str | Path = "reports") -> list[Path]:
    """The finished training runs under `reports_root`: folders with model/metrics.json and the class
    names model/labels.json (ConvLSTM runs have metrics.json too, but no classes)."""
    return sorted(
        path.parents[1]
        for path in _below(Path(reports_root), "*/model/metrics.json")
        if (path.parent / "labels.json").is_file()
    )


def _below(root: Path, pattern: str) -> list[Path]:
    """Files matching `pattern` under `root`, but not in hidden folders: `.<run>.partial-*` is a run being written."""
    return sorted(path for path in root.glob(pattern) if not path.relative_to(root).parts[0].startswith("."))
