"""Reports: self-contained HTML pages (plus a Markdown twin) for every run, and an index of runs.

Every run directory under `reports/` holds a `run.json` summary (kind, dataset, model, feature
config, headline metrics, date); `write_index` lists them all side by side in `reports/index.html`,
newest first. Pages use no network fonts or scripts: only their own PNG images beside them.
"""

from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.9rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
.warning{background:#fff3cd;border:1px solid #e0c36c;padding:.5rem 1rem}.muted{color:#777}
"""


def page(title: str, body: str) -> str:
    """A complete HTML document with the shared look."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")


def table(frame: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """An HTML table of a DataFrame, floats rounded, text escaped."""
    return frame.to_html(index=False, escape=True, border=0, float_format=float_format.format, na_rep="")


def warning(text: str) -> str:
    return f"<p class='warning'>{html.escape(text)}</p>"


def plot_curves(history: pd.DataFrame, path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")) -> Path:
    """Training curves PNG from a Keras history table: one panel per metric, train and `val_` lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in metrics if m in history.columns]
    fig, axes = plt.subplots(1, max(1, len(shown)), figsize=(5 * max(1, len(shown)), 3.5), squeeze=False)
    epochs = history["epoch"] + 1 if "epoch" in history.columns else range(1, len(history) + 1)
    for axis, metric in zip(axes[0], shown):
        axis.plot(epochs, history[metric], label="train")
        if f"val_{metric}" in history.columns:
            axis.plot(epochs, history[f"val_{metric}"], label="validation")
        axis.set_xlabel("epoch")
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_run_summary(run_dir: str | Path, **fields) -> Path:
    """`run.json`: the run's line in the index (kind, dataset, model, feature_config, metrics...)."""
    path = Path(run_dir) / "run.json"
    fields.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    path.write_text(json.dumps(fields, indent=1, default=str))
    return path


def write_index(reports_root: str | Path = "reports") -> Path:
    """`reports/index.html`: every run side by side, newest first, linking each run's page."""
    root = Path(reports_root)
    runs = []
    for summary in root.glob("*/run.json"):
        data = json.loads(summary.read_text())
        metrics = data.get("metrics", {})
        config = data.get("feature_config") or {}
        runs.append({
            "run": f"<a href='{html.escape(summary.parent.name)}/index.html'>{html.escape(summary.parent.name)}</a>",
            "kind": html.escape(str(data.get("kind", ""))),
            "dataset": html.escape(str(data.get("dataset", ""))),
            "model": html.escape(str(data.get("model", ""))),
            "features": html.escape(" ".join(f"{config[k]}" for k in ("backbone", "weights", "image_size", "sampling") if k in config)),
            "accuracy": metrics.get("accuracy"),
            "macro-F1": metrics.get("macro_f1"),
            "other": ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k not in ("accuracy", "macro_f1") and isinstance(v, (int, float))),
            "date": data.get("created", ""),
        })
    frame = pd.DataFrame(runs, columns=["run", "kind", "dataset", "model", "features", "accuracy", "macro-F1", "other", "date"])
    frame = frame.sort_values("date", ascending=False)
    body = frame.to_html(index=False, escape=False, border=0, float_format="{:.3f}".format, na_rep="") if runs else "<p>No runs yet.</p>"
    root.mkdir(parents=True, exist_ok=True)
    path = root / "index.html"
    path.write_text(page("Runs", body))
    return path
