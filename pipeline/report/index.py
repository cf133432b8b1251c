"""The runs index, `reports/index.html`: every run side by side, read from each run's `run.json`.

Written only into a report root the tool made (`folders.claim_report_root`), replaced in one step.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from pipeline.core import atomic
from pipeline.core.errors import InputError
from pipeline.report.pages import page
from pipeline.runs import folders
from pipeline.runs.files import inside_run, is_number

log = logging.getLogger(__name__)


def write_index(reports_root: str | Path = "reports") -> Path | None:
    """`reports/index.html`: every run side by side, newest first, linking each run's page.

    Written only into a report root (see `folders.claim_report_root`); elsewhere, e.g. over a page
    the user wrote, nothing is written, a warning names the file, and None is returned.
    """
    root = Path(reports_root)
    refused = folders.claim_report_root(root)
    if refused:
        log.warning("not writing the runs index %s: %s", root / "index.html", refused)
        return None
    runs = [row for row in map(_index_row, _below(root, "*/run.json")) if row]
    frame = pd.DataFrame(
        runs, columns=["run", "kind", "dataset", "model", "features", "accuracy", "macro-F1", "other", "date"]
    )
    frame = frame.sort_values("date", ascending=False)
    body = (
        frame.to_html(index=False, escape=False, border=0) if runs else "<p>No runs yet.</p>"
    )  # cells escaped by _index_row
    path = root / "index.html"
    atomic.write_text(
        path, page("Runs", body)
    )  # replaced in one step: two runs finishing at once do not mix their pages
    return path


def _index_row(summary: Path) -> dict | None:
    """One run's row of the index, every cell escaped HTML; None (and a warning) for a broken run.json."""
    try:
        data = json.loads(inside_run(summary.parents[1], f"{summary.parent.name}/run.json").read_text())
        if not isinstance(data, dict):
            raise InputError("not a JSON object")
    except (OSError, ValueError) as error:
        log.warning("%s is not listed in the runs index: %s", summary, error)
        return None
    metrics = data.get("metrics") if isinstance(data.get("metrics"), dict) else {}
    config = data.get("feature_config") if isinstance(data.get("feature_config"), dict) else {}
    name = summary.parent.name
    text = {
        "kind": data.get("kind", ""),
        "dataset": data.get("dataset", ""),
        "model": data.get("model", ""),
        "features": " ".join(
            f"{config[k]}" for k in ("backbone", "weights", "image_size", "sampling", "pooling") if k in config
        ),
        "accuracy": _score(metrics.get("accuracy"), "{:.3f}"),
        "macro-F1": _score(metrics.get("macro_f1"), "{:.3f}"),
        "other": ", ".join(
            f"{k} {_score(v, '{:.4g}')}"
            for k, v in metrics.items()
            if k not in ("accuracy", "macro_f1") and is_number(v)
        ),
        "date": data.get("created", ""),
    }
    return {
        "run": f"<a href='{html.escape(quote(name))}/index.html'>{html.escape(name)}</a>",
        **{column: html.escape(str(value)) for column, value in text.items()},
    }


def _score(value, form: str) -> str:
    return form.format(value) if is_number(value) else "" if value is None else str(value)


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
