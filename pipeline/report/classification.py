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

The files of a run may come from anyone, so they are checked as they are read (`read_json`,
`read_metrics`), and the runs index is written only into a report root the tool made
(`folders.claim_report_root`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

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
from pipeline.runs.files import best_model, read_json, read_metrics, write_run_summary

log = logging.getLogger(__name__)


def plot_curves(history: pd.DataFrame, path: str | Path, metrics: tuple[str, ...] = ("loss", "accuracy")) -> Path:
    """Training curves PNG at `path` (`figures.plot_curves`, saved): the file form the reports embed."""
    return save_figure(draw_curves(history, metrics), path)


# --- classification runs (stage two) ---------------------------------------------------------

LIST_MAX = 100  # rows shown of stage one's failures; the store's failures table holds them all
METRIC_KEYS = (
    "kind",
    "test_videos",
    "accuracy",
    "macro_f1",
    "val_accuracy",
    "epochs",
    "seconds_per_epoch",
    "seconds",
    "per_class",
)
CONFIG_KEYS = ("dataset", "store", "created", "feature_config", "feature_dim", "sequence", "data", "train", "failures")


def write_classification_report(run_dir: str | Path, name: str | None = None, index: bool = True) -> Path:
    """Write a training run's `index.html` and `report.md` from its `model/` folder, with the
    confusion matrices (PNG, CSV) and curves beside them; update the index of the runs' parent
    (if `index`). `name` titles the pages when the run is written under a temporary name."""
    run_dir = Path(run_dir)
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
    (run_dir / "index.html").write_text(html_page)
    (run_dir / "report.md").write_text(markdown)
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
    folder = run_dir / "model"
    if not (folder / "metrics.json").is_file():
        raise FileNotFoundError(
            f"{run_dir} is not a finished training run (no model/metrics.json); train one with `python -m "
            "pipeline train`"
        )
    metrics = read_metrics(folder / "metrics.json")
    for name, values in metrics.items():
        missing = [key for key in METRIC_KEYS if key not in values]
        if missing:
            raise InputError(
                f"{folder / 'metrics.json'}: model {name!r} has no {', '.join(missing)}; it is not a "
                "classification run's "
                f"metrics file (retrain with `python -m pipeline train`)"
            )
    config = read_json(folder / "config.json", dict)
    missing = [key for key in CONFIG_KEYS if key not in config]
    if missing:
        raise InputError(
            f"{folder / 'config.json'} has no {', '.join(missing)}; it is not a training run's config (retrain the run)"
        )
    labels = read_json(folder / "labels.json", list)
    if not all(isinstance(label, str) for label in labels):
        raise InputError(f"{folder / 'labels.json'} is not a list of class names")
    return {
        "config": config,
        "labels": labels,
        "metrics": metrics,
        "splits": pd.read_csv(folder / "splits.csv", dtype=str, keep_default_na=False),
        "history": pd.read_csv(folder / "history.csv"),
        "predictions": pd.read_csv(
            folder / "predictions.csv", dtype={"true": str, "predicted": str, "video_id": str}, keep_default_na=False
        ),
    }


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
        table_.to_csv(run_dir / f"{name}-confusion{suffix}.csv")
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
