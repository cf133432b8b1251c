"""Reports: self-contained HTML pages (plus a Markdown twin) for every run, and an index of runs.

Every run directory under `reports/` holds a `run.json` summary (kind, dataset, model, feature
config, headline metrics, date); `write_index` lists them all side by side in `reports/index.html`,
newest first. Pages use no network fonts or scripts: only their own PNG images beside them.

A training run's report (`write_classification_report`) is built from its `model/` folder alone:
the data (feature config, videos per class and split, failures), the models side by side on the
same test split, and per model the curves, confusion matrices (counts and row-normalized, PNG and
CSV), most frequent confusions, per-class scores and misclassified videos. Metrics come from
scikit-learn, figures from matplotlib's headless backend; one list of blocks renders both pages.

Labels, paths and run.json values come from users and from files others made, so every cell of
every page is escaped (HTML entities; in Markdown also backslash-escaped punctuation, one line per
cell), and figure text is never parsed as math. The runs index is written only into a report root
the tool made (`rundir.claim_report_root`).
"""

from __future__ import annotations

import functools
import html
import json
import logging
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from . import atomic, rundir

log = logging.getLogger(__name__)

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


_MARKDOWN_PUNCTUATION = re.compile(r"([\\`*_\[\]#!|~$])")


def markdown_text(value) -> str:
    """`value` shown literally in Markdown: on one line, HTML characters as entities, and the
    punctuation that makes links, code, emphasis, table cells, headings or math backslash-escaped."""
    text = " ".join(str(value).splitlines())
    return _MARKDOWN_PUNCTUATION.sub(r"\\\1", html.escape(text, quote=False))


def literal_text(plot):
    """Run a plotting function with figure text taken literally: a `$` in a label is a dollar sign, not math."""

    @functools.wraps(plot)
    def plot_literally(*args, **kwargs):
        import matplotlib

        _pyplot()  # selects the headless backend before the settings are saved and restored
        with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
            return plot(*args, **kwargs)

    return plot_literally


@literal_text
def plot_curves(history: pd.DataFrame, path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")) -> Path:
    """Training curves PNG from a Keras history table: one panel per metric, train and `val_` lines."""
    plt = _pyplot()
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


def write_index(reports_root: str | Path = "reports") -> Path | None:
    """`reports/index.html`: every run side by side, newest first, linking each run's page.

    Written only into a report root (see `rundir.claim_report_root`); elsewhere, e.g. over a page
    the user wrote, nothing is written, a warning names the file, and None is returned.
    """
    root = Path(reports_root)
    refused = rundir.claim_report_root(root)
    if refused:
        log.warning("not writing the runs index %s: %s", root / "index.html", refused)
        return None
    runs = [row for row in map(_index_row, _below(root, "*/run.json")) if row]
    frame = pd.DataFrame(runs, columns=["run", "kind", "dataset", "model", "features", "accuracy", "macro-F1", "other", "date"])
    frame = frame.sort_values("date", ascending=False)
    body = frame.to_html(index=False, escape=False, border=0) if runs else "<p>No runs yet.</p>"  # cells escaped by _index_row
    path = root / "index.html"
    atomic.write_text(path, page("Runs", body))  # replaced in one step: two runs finishing at once do not mix their pages
    return path


def _index_row(summary: Path) -> dict | None:
    """One run's row of the index, every cell escaped HTML; None (and a warning) for a broken run.json."""
    try:
        data = json.loads(summary.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
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
        "features": " ".join(f"{config[k]}" for k in ("backbone", "weights", "image_size", "sampling") if k in config),
        "accuracy": _score(metrics.get("accuracy"), "{:.3f}"),
        "macro-F1": _score(metrics.get("macro_f1"), "{:.3f}"),
        "other": ", ".join(f"{k} {_score(v, '{:.4g}')}" for k, v in metrics.items() if k not in ("accuracy", "macro_f1") and _is_number(v)),
        "date": data.get("created", ""),
    }
    return {"run": f"<a href='{html.escape(quote(name))}/index.html'>{html.escape(name)}</a>",
            **{column: html.escape(str(value)) for column, value in text.items()}}


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _score(value, form: str) -> str:
    return form.format(value) if _is_number(value) else "" if value is None else str(value)


# --- classification runs (stage two) ---------------------------------------------------------

TOP_K = (3, 5)  # top-k accuracies reported when k is below the number of classes
ANNOTATE_MAX = 20  # confusion matrices up to this many classes print their numbers in the cells
CLUSTER_MIN = 30  # from this many classes on, the confusion PNG orders classes by mutual confusion
LIST_MAX = 100  # rows shown of long lists (misclassified videos, failures); the CSVs hold them all
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")  # model names become file names and links: no dots, separators or colons
METRIC_KEYS = ("kind", "test_videos", "accuracy", "macro_f1", "val_accuracy", "epochs", "seconds_per_epoch", "seconds", "per_class")
CONFIG_KEYS = ("dataset", "store", "created", "feature_config", "feature_dim", "sequence", "data", "train", "failures")


def classification_metrics(true: np.ndarray, probabilities: np.ndarray, labels: list[str]) -> dict:
    """Test metrics from class indices (n,) and probabilities (n, C), with scikit-learn.

    Macro-F1 averages over the classes present in `true`: a class without test videos has no
    recall to average. Per-class values that are undefined (no support, never predicted) are None.
    """
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, top_k_accuracy_score

    classes = list(range(len(labels)))
    result = {"test_videos": int(len(true)), "accuracy": None, "macro_f1": None}
    result.update({f"top{k}_accuracy": None for k in TOP_K if k < len(labels)})
    if not len(true):
        result["per_class"] = {label: {"precision": None, "recall": None, "f1": None, "support": 0} for label in labels}
        return result
    predicted = probabilities.argmax(1)
    result["accuracy"] = float(accuracy_score(true, predicted))
    result["macro_f1"] = float(f1_score(true, predicted, labels=np.unique(true), average="macro", zero_division=0))
    for k in TOP_K:
        if k < len(labels):
            result[f"top{k}_accuracy"] = float(top_k_accuracy_score(true, probabilities, k=k, labels=classes))
    precision, recall, f1, support = precision_recall_fscore_support(true, predicted, labels=classes, zero_division=np.nan)
    result["per_class"] = {label: {"precision": _number(precision[i]), "recall": _number(recall[i]), "f1": _number(f1[i]), "support": int(support[i])}
                           for i, label in enumerate(labels)}
    return result


def confusion_tables(true: pd.Series, predicted: pd.Series, labels: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Confusion matrix (rows: true, columns: predicted) in counts and row-normalized; a row of a
    class without test videos is empty (NaN) in the normalized table."""
    from sklearn.metrics import confusion_matrix

    counts = pd.DataFrame(confusion_matrix(true, predicted, labels=labels), index=pd.Index(labels, name="true"), columns=labels)
    totals = counts.sum(axis=1)
    normalized = counts.div(totals.where(totals > 0), axis=0)
    return counts, normalized


def top_confusions(counts: pd.DataFrame, limit: int = 20) -> pd.DataFrame:
    """The most frequent mistakes: true, predicted, videos, and share of the true class's videos."""
    pairs = counts.stack().rename("videos").reset_index()
    pairs.columns = ["true", "predicted", "videos"]
    pairs = pairs[(pairs["true"] != pairs["predicted"]) & (pairs["videos"] > 0)]
    pairs["share of true class"] = pairs["videos"] / pairs["true"].map(counts.sum(axis=1))
    return pairs.sort_values(["videos", "true"], ascending=[False, True]).head(limit).reset_index(drop=True)


@literal_text
def plot_confusion(matrix: pd.DataFrame, path: str | Path, title: str, normalized: bool = False) -> Path:
    """Confusion matrix PNG, readable from a handful of classes to a hundred and more.

    The figure and label font scale with the class count; cells carry their numbers up to
    ANNOTATE_MAX classes; from CLUSTER_MIN classes on, classes are ordered so that the ones often
    confused with each other sit side by side (the CSV keeps the label order).
    """
    plt = _pyplot()
    order = _display_order(matrix) if len(matrix) >= CLUSTER_MIN else list(matrix.index)
    shown = matrix.loc[order, order]
    n = len(shown)
    inches = min(30.0, max(5.0, 0.2 * n + 2.5))
    font = 10 if n <= 15 else 8 if n <= 40 else 6
    fig, axis = plt.subplots(figsize=(inches + 1, inches))
    values = shown.to_numpy(dtype=float)
    image = axis.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else max(1.0, np.nanmax(values, initial=0)))
    axis.set_xticks(range(n), shown.columns, rotation=90, fontsize=font)
    axis.set_yticks(range(n), shown.index, fontsize=font)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title + (" (classes ordered by mutual confusion)" if order != list(matrix.index) else ""))
    if n <= ANNOTATE_MAX:
        threshold = np.nanmax(values, initial=0) / 2
        for (row, column), value in np.ndenumerate(values):
            if not np.isnan(value):
                axis.text(column, row, f"{value:.2f}" if normalized else f"{value:.0f}", ha="center", va="center",
                          fontsize=font, color="white" if value > threshold else "black")
    fig.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_classification_report(run_dir: str | Path, name: str | None = None, index: bool = True) -> Path:
    """Write a training run's `index.html` and `report.md` from its `model/` folder, with the
    confusion matrices (PNG, CSV) and curves beside them; update the index of the runs' parent
    (if `index`). `name` titles the pages when the run is written under a temporary name."""
    run_dir = Path(run_dir)
    run = _read_run(run_dir)
    if not rundir.is_run_dir(run_dir):
        raise rundir.FolderError(f"{run_dir} does not look like a run directory made by this tool (no {rundir.MARKER}, and files a "
                                 f"run never has): not writing a report into it")
    blocks = [("p", f"Dataset {run['config']['dataset']}, store {run['config']['store']}, trained {run['config']['created']}.")]
    if run["config"].get("fallback"):
        blocks.append(("warning", f"Features from the offline fallback backbone: {run['config']['fallback']}"))
    blocks += _results_blocks(run) + _data_blocks(run)
    for name in run["metrics"]:
        blocks += _model_blocks(run_dir, run, name)
    title = f"Run {name or run_dir.name}"
    (run_dir / "index.html").write_text(page(title, "".join(_html_block(block) for block in blocks)))
    (run_dir / "report.md").write_text(f"# {markdown_text(title)}\n\n" + "\n\n".join(_markdown_block(block) for block in blocks) + "\n")
    headline = _headline(run["metrics"])
    others = [name for name in run["metrics"] if name != headline]
    write_run_summary(
        run_dir, kind="classification", dataset=run["config"]["dataset"], created=run["config"]["created"],
        model=headline + (f" (+ {', '.join(others)})" if others else ""), feature_config=run["config"]["feature_config"],
        metrics={"accuracy": run["metrics"][headline]["accuracy"], "macro_f1": run["metrics"][headline]["macro_f1"],
                 **{f"{name} accuracy": run["metrics"][name]["accuracy"] for name in others}},
    )
    if index:
        write_index(run_dir.parent)
    return run_dir / "index.html"


def training_runs(reports_root: str | Path = "reports") -> list[Path]:
    """The finished training runs under `reports_root`: folders with model/metrics.json and the class
    names model/labels.json (ConvLSTM runs have metrics.json too, but no classes)."""
    return sorted(path.parents[1] for path in _below(Path(reports_root), "*/model/metrics.json") if (path.parent / "labels.json").is_file())


def _below(root: Path, pattern: str) -> list[Path]:
    """Files matching `pattern` under `root`, but not in hidden folders: `.<run>.partial-*` is a run being written."""
    return sorted(path for path in root.glob(pattern) if not path.relative_to(root).parts[0].startswith("."))


def _read_run(run_dir: Path) -> dict:
    """A run's `model/` files, checked: they may come from anyone, and model names become file names and links."""
    folder = run_dir / "model"
    if not (folder / "metrics.json").is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished training run (no model/metrics.json); train one with `python -m pipeline train`")
    metrics = read_metrics(folder / "metrics.json")
    for name, values in metrics.items():
        missing = [key for key in METRIC_KEYS if key not in values]
        if missing:
            raise ValueError(f"{folder / 'metrics.json'}: model {name!r} has no {', '.join(missing)}; it is not a classification run's "
                             f"metrics file (retrain with `python -m pipeline train`)")
    config = read_json(folder / "config.json", dict)
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise ValueError(f"{folder / 'config.json'} has no {', '.join(missing)}; it is not a training run's config (retrain the run)")
    labels = read_json(folder / "labels.json", list)
    if not all(isinstance(label, str) for label in labels):
        raise ValueError(f"{folder / 'labels.json'} is not a list of class names")
    return {
        "config": config,
        "labels": labels,
        "metrics": metrics,
        "splits": pd.read_csv(folder / "splits.csv", dtype=str, keep_default_na=False),
        "history": pd.read_csv(folder / "history.csv"),
        "predictions": pd.read_csv(folder / "predictions.csv", dtype={"true": str, "predicted": str, "video_id": str}, keep_default_na=False),
    }


def read_metrics(path: Path) -> dict:
    """A run's metrics.json: an object of models, each an object of metrics, named by plain names
    (a name becomes file names and links, so `../x`, `/tmp/x` or `javascript:...` are refused)."""
    metrics = read_json(path, dict)
    for name, values in metrics.items():
        if not MODEL_NAME.fullmatch(name):
            raise ValueError(f"{path}: {name!r} is not a model name (letters, digits, '-' and '_' only); refusing the run")
        if not isinstance(values, dict):
            raise ValueError(f"{path}: the metrics of model {name!r} are not a JSON object")
    if not metrics:
        raise ValueError(f"{path} lists no models")
    return metrics


def read_json(path: Path, kind: type):
    """The JSON value of `path`, which must be a `kind` (dict or list); ValueError naming the file otherwise."""
    try:
        value = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(value, kind):
        raise ValueError(f"{path} holds a JSON {type(value).__name__}, not the {'object' if kind is dict else 'array'} this tool writes")
    return value


def _headline(metrics: dict) -> str:
    """The model a run is listed by: the sequence model with the best validation accuracy."""
    sequence = [name for name, values in metrics.items() if values["kind"] == "sequence"] or list(metrics)
    return max(sequence, key=lambda name: metrics[name]["val_accuracy"] if _is_number(metrics[name]["val_accuracy"]) else 0.0)


def _results_blocks(run: dict) -> list:
    metrics = run["metrics"]
    rows = [{"model": name, "type": values["kind"], "test accuracy": values["accuracy"], "macro-F1": values["macro_f1"],
             **{key.replace("_accuracy", ""): value for key, value in values.items() if key.startswith("top")},
             "val accuracy": values["val_accuracy"], "epochs": values["epochs"] or "",
             "s/epoch": values["seconds_per_epoch"], "train s": values["seconds"]} for name, values in metrics.items()]
    blocks = [("h2", "Results on the test split"), ("table", pd.DataFrame(rows))]
    tested = next(iter(metrics.values()))["test_videos"]
    if not tested:
        return blocks + [("warning", "The test split is empty: there are no test metrics, confusion matrices or misclassified videos.")]
    blocks.append(("p", f"All models are evaluated on the same {tested} test videos."))
    best = {kind: max((name for name in metrics if metrics[name]["kind"] == kind), key=lambda name: metrics[name]["accuracy"], default=None)
            for kind in ("sequence", "order-blind")}
    if best["sequence"] and best["order-blind"]:
        sequence, blind = metrics[best["sequence"]]["accuracy"], metrics[best["order-blind"]]["accuracy"]
        blocks.append(("p", f"Time order: the best sequence model ({best['sequence']}, {sequence:.3f}) against the best order-blind "
                            f"baseline ({best['order-blind']}, {blind:.3f}): {100 * (sequence - blind):+.1f} points of test accuracy."))
    return blocks


def _data_blocks(run: dict) -> list:
    config, splits, labels = run["config"], run["splits"], run["labels"]
    settings = {**{f"feature {key}": value for key, value in config["feature_config"].items()}, "feature dimension": config["feature_dim"],
                **{f"sequence {key}": value for key, value in config["sequence"].items()}, "sequences read": config["data"],
                **{f"train {key}": value for key, value in config["train"].items() if key != "network"},
                **{f"network {key}": value for key, value in config["train"]["network"].items()}}
    counts = pd.crosstab(splits["label"], splits["split"]).reindex(index=labels, columns=["train", "val", "test"], fill_value=0)
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum()
    blocks = [("h2", "Data"), ("table", pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]})),
              ("p", f"{len(splits)} videos in {len(labels)} classes; videos per class and split:"), ("table", counts.reset_index())]
    for split in ("train", "val", "test"):
        missing = counts.index[:-1][counts[split].iloc[:-1] == 0].tolist()
        if missing:
            blocks.append(("warning", f"The {split} split has no videos of {len(missing)} class(es): {', '.join(missing)}."))
    failures = pd.DataFrame(config["failures"], columns=["video_id", "path", "stage", "error", "message"])
    blocks.append(("p", f"Videos that failed in stage one and are not in the store: {len(failures)}."))
    if len(failures):
        blocks.append(("table", failures.drop(columns=["video_id"]).head(LIST_MAX)))
    return blocks


def _model_blocks(run_dir: Path, run: dict, name: str) -> list:
    values, labels = run["metrics"][name], run["labels"]
    blocks = [("h2", f"Model {name} ({values['kind']})")]
    history = run["history"][run["history"]["model"] == name]
    if len(history):
        plot_curves(history.drop(columns="epoch"), run_dir / f"{name}-curves.png")  # epochs count from 1 in history.csv
        blocks.append(("image", f"{name}-curves.png", f"{name} training curves"))
    if not values["test_videos"]:
        return blocks
    predictions = run["predictions"][run["predictions"]["model"] == name]
    counts, normalized = confusion_tables(predictions["true"], predictions["predicted"], labels)
    for table_, suffix, caption, rates in ((counts, "", "counts", False), (normalized, "-normalized", "row-normalized", True)):
        table_.to_csv(run_dir / f"{name}-confusion{suffix}.csv")
        plot_confusion(table_, run_dir / f"{name}-confusion{suffix}.png", f"{name}: confusion matrix, {caption}", normalized=rates)
        blocks.append(("image", f"{name}-confusion{suffix}.png", f"{name} confusion matrix, {caption}"))
    blocks.append(("links", [("confusion counts (CSV)", f"{name}-confusion.csv"), ("row-normalized (CSV)", f"{name}-confusion-normalized.csv")]))
    confused = top_confusions(counts)
    blocks += [("h3", "Most frequent confusions"), ("table", confused) if len(confused) else ("p", "No test video is misclassified.")]
    per_class = pd.DataFrame([{"class": label, **scores} for label, scores in values["per_class"].items()])
    blocks += [("h3", "Per class"), ("table", per_class)]
    wrong = predictions[predictions["true"] != predictions["predicted"]].sort_values("confidence", ascending=False)
    blocks.append(("h3", f"Misclassified test videos ({len(wrong)} of {len(predictions)}, most confident first)"))
    if len(wrong):
        blocks.append(("table", wrong[["video_id", "true", "predicted", "confidence", "path"]].head(LIST_MAX)))
    return blocks


def _html_block(block: tuple) -> str:
    kind, *content = block
    if kind == "table":
        return table(content[0])
    if kind == "warning":
        return warning(content[0])
    if kind == "image":
        return f"<p><img src='{html.escape(quote(content[0]))}' alt='{html.escape(content[1])}'></p>"
    if kind == "links":
        return "<p>" + " · ".join(f"<a href='{html.escape(quote(href))}'>{html.escape(text)}</a>" for text, href in content[0]) + "</p>"
    return f"<{kind}>{html.escape(content[0])}</{kind}>"


def _markdown_block(block: tuple) -> str:
    kind, *content = block
    if kind == "table":
        return _markdown_table(content[0])
    if kind == "warning":
        return f"> **Warning:** {markdown_text(content[0])}"
    if kind == "image":
        return f"![{markdown_text(content[1])}]({quote(content[0])})"
    if kind == "links":
        return " · ".join(f"[{markdown_text(text)}]({quote(href)})" for text, href in content[0])
    return {"h2": "## ", "h3": "### "}.get(kind, "") + markdown_text(content[0])


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        if pd.api.types.is_scalar(value) and pd.isna(value):
            return ""
        return f"{value:.3f}" if isinstance(value, float) else markdown_text(value)

    lines = ["| " + " | ".join(map(markdown_text, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _display_order(matrix: pd.DataFrame) -> list:
    """Labels ordered by average-linkage clustering on how often two classes are confused."""
    from scipy.cluster.hierarchy import leaves_list, linkage
    from scipy.spatial.distance import squareform

    counts = matrix.to_numpy(dtype=float)
    rates = np.nan_to_num(counts / np.maximum(np.nansum(counts, axis=1, keepdims=True), 1e-12))
    affinity = (rates + rates.T) / 2
    np.fill_diagonal(affinity, 0)
    distance = 1 - affinity / max(affinity.max(), 1e-12)
    np.fill_diagonal(distance, 0)
    return [matrix.index[i] for i in leaves_list(linkage(squareform(distance, checks=False), method="average"))]


def _number(value) -> float | None:
    """A JSON-safe number: None for NaN (undefined)."""
    return None if np.isnan(value) else float(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
