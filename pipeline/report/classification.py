"""Reports: self-contained HTML pages (plus a Markdown twin) for every run, and an index of runs.

Every run directory under `reports/` holds a `run.json` summary (kind, dataset, model, feature
config, headline metrics, date); `write_index` lists them all side by side in `reports/index.html`,
newest first.

A training run's report (`write_classification_report`) is built from its `model/` folder alone and
reads top-down: the models side by side on the same test split with their 95% intervals and the
verdict on time order (`summary`), a table of contents, the data (videos per class and split,
failures; the configuration collapsed), and per model the curves, confusion matrices (counts and
row-normalized, PNG and CSV), per-class scores, most frequent confusions, and thumbnail strips of
the misclassified videos and of correct examples (`examples`, `strips`). Figures come from
`figures`; one list of blocks renders both pages (`pages`).

The files of a run may come from anyone, so they are checked as they are read (`inside_run`: no
links out of the run; `read_json`, `read_metrics`, `check_fields`: the JSON types and CSV columns
the report uses), every page, figure and table is written by renaming a new file over its name
(`core.atomic`: a planted link is replaced, never written through), and the runs index is written
only into a report root the tool made (`folders.claim_report_root`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd

from pipeline.core import atomic
from pipeline.core.errors import InputError
from pipeline.report.confusion import confusion_tables, top_confusions
from pipeline.report.examples import example_blocks, mistake_blocks
from pipeline.report.figures import plot_confusion, save_figure
from pipeline.report.figures import plot_curves as draw_curves
from pipeline.report.index import write_index
from pipeline.report.pages import anchor, render
from pipeline.report.strips import remove_unused
from pipeline.report.summary import headline_metrics, other_models, summary_blocks
from pipeline.runs import folders
from pipeline.runs.files import (
    NULL,
    NUMBER,
    best_model,
    check_fields,
    inside_run,
    read_json,
    read_labels,
    read_metrics,
    write_run_summary,
)

log = logging.getLogger(__name__)


def plot_curves(history: pd.DataFrame, path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")) -> Path:
    """Training curves PNG at `path` (`figures.plot_curves`, saved): the file form the reports embed."""
    return save_figure(draw_curves(history, metrics), path)


# --- classification runs (stage two) ---------------------------------------------------------

LIST_MAX = 100  # rows shown of stage one's failures; the store's failures table holds them all
SCORE = (*NUMBER, NULL)  # a score is null where undefined (no test videos)
METRIC_TYPES = {
    "kind": str,
    "test_videos": int,
    "accuracy": SCORE,
    "macro_f1": SCORE,
    "val_accuracy": SCORE,
    "epochs": (int, NULL),
    "seconds_per_epoch": SCORE,
    "seconds": NUMBER,
    "per_class": dict,
}  # what the report reads of each model in metrics.json, by JSON type
CONFIG_TYPES = {
    "dataset": str,
    "store": str,
    "created": str,
    "feature_config": dict,
    "feature_dim": int,
    "sequence": dict,
    "data": str,
    "train": dict,
    "failures": list,
}  # ... and of config.json
COLUMNS = {
    "splits.csv": ("label", "split"),
    "history.csv": ("model", "epoch"),
    "predictions.csv": ("model", "video_id", "path", "true", "predicted", "confidence"),
}  # ... and of the CSVs
CSV_OPTIONS = {
    "splits.csv": {"dtype": str, "keep_default_na": False},
    "history.csv": {},
    "predictions.csv": {"dtype": {"true": str, "predicted": str, "video_id": str}, "keep_default_na": False},
}  # labels and ids read as written ("NA" and "1" included)


def write_classification_report(run_dir: str | Path, name: str | None = None, index: bool = True) -> Path:
    """Write a training run's `index.html` and `report.md` from its `model/` folder, with the
    confusion matrices (PNG, CSV) and curves beside them; update the index of the runs' parent
    (if `index`). `name` titles the pages when the run is written under a temporary name."""
    run_dir = Path(run_dir)
    if run_dir.is_symlink():
        raise folders.FolderError(
            f"{run_dir} is a symbolic link (to {os.readlink(run_dir)}): not writing a report through it; "
            f"report {run_dir.resolve()} itself"
        )
    run = _read_run(run_dir)
    if not folders.is_run_dir(run_dir):
        raise folders.FolderError(
            f"{run_dir} does not look like a run directory made by this tool (no {folders.MARKER}, and files a "
            f"run never has): not writing a report into it"
        )
    blocks = [
        ("links", [("all runs", "../index.html"), ("this page in Markdown", "report.md")]),
        (
            "p",
            f"Dataset {run['config']['dataset']}, store {run['config']['store']}, trained {run['config']['created']}.",
        ),
    ]
    if run["config"].get("fallback"):
        blocks.append(("warning", f"Features from the offline fallback backbone: {run['config']['fallback']}"))
    used = set()  # the strips the page shows
    sections = [_model_blocks(run_dir, run, model, used) for model in run["metrics"]]
    contents = [("Results", "results"), ("Data", "data")] + [(block[1], block[2]) for block, *_ in sections]
    blocks += summary_blocks(run) + [("toc", contents)] + _data_blocks(run) + sum(sections, [])
    remove_unused(run_dir, used)
    html_page, markdown = render(f"Run {name or run_dir.name}", blocks)
    atomic.write_text(run_dir / "index.html", html_page)
    atomic.write_text(run_dir / "report.md", markdown)
    headline = best_model(run["metrics"])
    others = [name for name in run["metrics"] if name != headline]
    write_run_summary(
        run_dir,
        kind="classification",
        dataset=run["config"]["dataset"],
        created=run["config"]["created"],
        model=headline + (f" (+ {', '.join(others)})" if others else ""),
        feature_config=run["config"]["feature_config"],
        metrics=headline_metrics(run["metrics"]),
        other_models=other_models(run["metrics"]),
    )
    if index:
        write_index(run_dir.parent)
    return run_dir / "index.html"


def _read_run(run_dir: Path) -> dict:
    """A run's `model/` files, checked: they may come from anyone, and model names become file names and links."""
    path = inside_run(run_dir, "model/metrics.json")
    if not path.is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a finished training run (no model/metrics.json); train one with `python -m "
            "pipeline train`"
        )
    metrics = read_metrics(path)
    for name, values in metrics.items():
        check_fields(path, values, METRIC_TYPES, f"model {name!r} ")
        if values["test_videos"]:
            check_fields(path, values, {"accuracy": NUMBER, "macro_f1": NUMBER}, f"model {name!r} (tested) ")
        if not all(isinstance(scores, dict) for scores in values["per_class"].values()):
            raise InputError(f"{path}: model {name!r}: the scores of each class in 'per_class' are not JSON objects")
    path = inside_run(run_dir, "model/config.json")
    config = read_json(path, dict)
    check_fields(path, config, CONFIG_TYPES)
    check_fields(path, config["train"], {"network": dict}, "train: ")
    if not all(isinstance(failure, dict) for failure in config["failures"]):
        raise InputError(f"{path}: 'failures' is not a list of JSON objects (one per failed video)")
    tables = {name: _read_table(run_dir, name) for name in COLUMNS}
    return {
        "config": config,
        "labels": read_labels(inside_run(run_dir, "model/labels.json")),
        "metrics": metrics,
        "splits": tables["splits.csv"],
        "history": tables["history.csv"],
        "predictions": tables["predictions.csv"],
    }


def _read_table(run_dir: Path, name: str) -> pd.DataFrame:
    """One of a run's CSVs in model/, with the columns the report uses (InputError naming the file otherwise)."""
    path = inside_run(run_dir, f"model/{name}")
    table = pd.read_csv(path, **CSV_OPTIONS[name])
    missing = [column for column in COLUMNS[name] if column not in table.columns]
    if missing:
        raise InputError(
            f"{path} has no column {', '.join(missing)}; it is not a file this tool wrote (retrain the run)"
        )
    return table


def _data_blocks(run: dict) -> list:
    """What the models were trained on: settings, videos per class and split, classes a split lacks, stage one's
    failures."""
    config, splits, labels = run["config"], run["splits"], run["labels"]
    settings = {
        **{f"feature {key}": value for key, value in config["feature_config"].items()},
        "feature dimension": config["feature_dim"],
        **{f"sequence {key}": value for key, value in config["sequence"].items()},
        "sequences read": config["data"],
        **{f"train {key}": value for key, value in config["train"].items() if key != "network"},
        **{f"network {key}": value for key, value in config["train"]["network"].items()},
    }
    counts = (
        pd.crosstab(splits["label"], splits["split"])
        .reindex(index=labels, columns=["train", "val", "test"], fill_value=0)
        .rename_axis(index="class", columns=None)  # no stray "split" heading over the table
    )
    counts["total"] = counts.sum(axis=1)
    counts.loc["total"] = counts.sum()
    blocks = [
        ("h2", "Data", "data"),
        ("p", f"{len(splits)} videos in {len(labels)} classes; videos per class and split:"),
        ("table", counts.reset_index()),
    ]
    for split in ("train", "val", "test"):
        missing = counts.index[:-1][counts[split].iloc[:-1] == 0].tolist()
        if missing:
            blocks.append(
                ("warning", f"The {split} split has no videos of {len(missing)} class(es): {', '.join(missing)}.")
            )
    failures = pd.DataFrame(config["failures"], columns=["video_id", "path", "stage", "error", "message"])
    blocks.append(("p", f"Videos that failed in stage one and are not in the store: {len(failures)}."))
    if len(failures):
        blocks.append(("table", failures.drop(columns=["video_id"]).head(LIST_MAX)))
    settings_table = pd.DataFrame({"setting": list(settings), "value": [str(v) for v in settings.values()]})
    return blocks + [("details", f"Configuration ({len(settings)} settings)", [("table", settings_table)])]


def _model_blocks(run_dir: Path, run: dict, name: str, used: set[str]) -> list:
    """One model's curves, confusion matrices (PNG and CSV, written beside the page), per-class scores, confusions,
    and strips of its mistakes and of correct examples (the strips shown are added to `used`)."""
    values, labels = run["metrics"][name], run["labels"]
    title = f"Model {name} ({values['kind']})"
    blocks = [("h2", title, anchor(title))]
    history = run["history"][run["history"]["model"] == name]
    if len(history):
        plot_curves(history.drop(columns="epoch"), run_dir / f"{name}-curves.png")  # epochs count from 1 in history.csv
        blocks.append(("image", f"{name}-curves.png", f"{name} training curves"))
    if not values["test_videos"]:
        return blocks
    predictions = run["predictions"][run["predictions"]["model"] == name]
    counts, normalized = confusion_tables(predictions["true"], predictions["predicted"], labels)
    images = []
    for table_, suffix, caption, rates in (
        (counts, "", "counts", False),
        (normalized, "-normalized", "row-normalized", True),
    ):
        atomic.write_csv(run_dir / f"{name}-confusion{suffix}.csv", table_)
        save_figure(
            plot_confusion(table_, f"{name}: confusion matrix, {caption}", normalized=rates),
            run_dir / f"{name}-confusion{suffix}.png",
        )
        images.append((f"{name}-confusion{suffix}.png", f"{name} confusion matrix, {caption}"))
    blocks += [
        ("images", images),
        (
            "links",
            [
                ("confusion counts (CSV)", f"{name}-confusion.csv"),
                ("row-normalized (CSV)", f"{name}-confusion-normalized.csv"),
            ],
        ),
    ]
    blocks += mistake_blocks(run_dir, predictions, used)
    per_class = pd.DataFrame([{"class": label, **scores} for label, scores in values["per_class"].items()])
    confused = top_confusions(counts)
    blocks += [("h3", "Per class"), ("table", per_class)]
    blocks += [("h3", "Most frequent confusions"), ("table", confused)] if len(confused) else []
    return blocks + example_blocks(run_dir, predictions, labels, used)
