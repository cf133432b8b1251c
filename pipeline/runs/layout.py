"""What a run directory holds, by name: the one list every reader and writer of runs uses.

A training run is `model/` (the models, config, labels, splits, history, predictions, metrics,
TensorBoard logs) plus its report pages and their thumbnail strips; a ConvLSTM run its own set;
`predictions/` what `predict` writes. The model names are here because they become file names
inside a run.
"""

from __future__ import annotations

import re
from pathlib import Path

SEQUENCE_MODELS = ("lstm", "gru")
BASELINES = ("mean", "single-frame")
ALL_MODELS = (*SEQUENCE_MODELS, *BASELINES)

MARKER = ".video-feature-pipeline.json"
KINDS = ("run", "demo", "reports", "predictions")
MODEL_FILES = {
    "metrics.json",
    "labels.json",
    "config.json",
    "splits.csv",
    "history.csv",
    "predictions.csv",
}  # train.py's model/
MODEL_SUFFIXES = (".keras", ".npz", ".joblib")  # model/<model><suffix>; .joblib from earlier versions (never loaded)
RUN_FILES = {
    "index.html",
    "report.md",
    "run.json",
    MARKER,
}  # a run's top level, besides model/, predictions/ and per-model files
MODEL_REPORT_FILES = (
    "-curves.png",
    "-confusion.csv",
    "-confusion.png",
    "-confusion-normalized.csv",
    "-confusion-normalized.png",
)
RUN_TREES = {
    "strips": re.compile(r"[0-9a-f]{16}\.jpg"),  # the report's thumbnail strips of test videos
    "model/tensorboard": re.compile(  # train's TensorBoard logs of each sequence model
        r"[A-Za-z0-9][A-Za-z0-9_-]*/(train|validation)/events\.out\.tfevents\.[^/]+"
    ),
}  # folders of a training run whose files are named by a pattern (of their path inside the folder)
PARTIAL_PREDICTIONS = "predictions.partial.jsonl"  # predict's results so far, one JSON line per video as it finishes
PREDICTION_FILES = {
    "predictions.csv",
    "predictions.json",
    "windows.csv",
    PARTIAL_PREDICTIONS,
    MARKER,
}  # besides timeline-*.png
TIMELINE = re.compile(r"predictions/timeline-.*\.png")
CONVLSTM_FILES = {
    "index.html",
    "report.md",
    "run.json",
    "curves.png",
    "per_frame.png",
    MARKER,
}  # besides example_<n>.png|gif
CONVLSTM_MODEL_FILES = {"config.json", "metrics.json", "history.csv", "per_frame.csv", "papers.csv", "model.keras"}
CONVLSTM_EXAMPLE = re.compile(r"\./example_\d+\.(png|gif)")
RUNS_INDEX_HEAD = (
    "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Runs</title>"  # report.write_index's page
)


def in_tree(where: str, name: str) -> bool:
    """Whether the entry `name` of a run's folder `where` ("." for the run itself) is a folder of `RUN_TREES`."""
    return (name if where == "." else f"{where}/{name}") in RUN_TREES


def foreign_in_trees(run_dir: Path) -> list[str]:
    """What the `RUN_TREES` folders of `run_dir` hold that a run never writes, by path in the run: a file their
    pattern does not name, a symbolic link (the folder itself included), anything but plain files and folders."""
    foreign = []
    for tree, pattern in RUN_TREES.items():
        root = Path(run_dir) / tree
        if root.is_symlink() or (root.exists() and not root.is_dir()):
            foreign.append(tree)
        for path in sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else ():
            inside = path.relative_to(root).as_posix()
            if path.is_symlink() or not (path.is_dir() or (path.is_file() and pattern.fullmatch(inside))):
                foreign.append(f"{tree}/{inside}")
    return foreign
