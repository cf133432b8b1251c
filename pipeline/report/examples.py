"""The test videos a model got wrong, and examples it got right, as galleries of thumbnail strips.

Each tile shows a video's strip (`strips`), its true and predicted label with the probabilities,
and links to the video file. A page stays a few hundred KB however large the test split: at most
`MISTAKES_PER_CLASS` mistakes per true class (the most confident first) and `EXAMPLES_PER_CLASS`
correct ones per class, `GALLERY_MAX` tiles a gallery, the rest counted per class under it
(model/predictions.csv lists every video).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.report.pages import Tile
from pipeline.report.strips import file_link, strip

MISTAKES_PER_CLASS = 4
EXAMPLES_PER_CLASS = 2
GALLERY_MAX = 40


def mistake_blocks(run_dir: Path, predictions: pd.DataFrame, used: set[str]) -> list:
    """Blocks for one model's misclassified test videos (`predictions`: its rows of predictions.csv);
    the strips shown are added to `used`."""
    wrong = predictions[predictions["true"] != predictions["predicted"]].sort_values("confidence", ascending=False)
    blocks = [("h3", f"Misclassified test videos ({len(wrong)} of {len(predictions)}, most confident first)")]
    if not len(wrong):
        return blocks + [("p", "No test video is misclassified.")]
    return blocks + _gallery(run_dir, wrong, MISTAKES_PER_CLASS, used, "misclassified")


def example_blocks(run_dir: Path, predictions: pd.DataFrame, labels: list[str], used: set[str]) -> list:
    """Blocks for examples of each class that one model classified right, the most confident first (collapsed
    until clicked: the page is about the mistakes; the strips load only when shown)."""
    right = predictions[predictions["true"] == predictions["predicted"]].sort_values("confidence", ascending=False)
    order = {label: i for i, label in enumerate(labels)}
    right = right.sort_values("true", key=lambda column: column.map(order).fillna(len(order)), kind="stable")
    title = f"Correct examples ({len(right)} of {len(predictions)} right, up to {EXAMPLES_PER_CLASS} a class)"
    if not len(right):
        return [("h3", title), ("p", "No test video is classified right.")]
    return [("details", title, _gallery(run_dir, right, EXAMPLES_PER_CLASS, used, "correct"))]  # folded: mistakes first


def _gallery(run_dir: Path, rows: pd.DataFrame, per_class: int, used: set[str], what: str) -> list:
    """A gallery of at most `per_class` of `rows` per true class and GALLERY_MAX in all, then who is not shown."""
    ranked = rows.groupby("true", sort=False).cumcount()
    shown = rows[ranked < per_class].head(GALLERY_MAX)
    tiles = [_tile(run_dir, row, used) for _, row in shown.iterrows()]
    blocks = [("gallery", tiles)]
    rest = rows.drop(shown.index)["true"].value_counts(sort=False)
    if len(rest):
        counts = ", ".join(f"{count} of {label}" for label, count in rest.items())
        blocks.append(
            ("note", f"Not shown: {len(rows) - len(shown)} more {what} ({counts}); predictions.csv lists all.")
        )
    return blocks


def _tile(run_dir: Path, row: pd.Series, used: set[str]) -> Tile:
    image, why = strip(run_dir, row["path"], row.get("frame_times", ""))
    if image:
        used.add(image)
    lines = [f"true {row['true']}, predicted {row['predicted']} (p {float(row['confidence']):.2f})"]
    true_column = f"p_{row['true']}"
    if row["true"] != row["predicted"] and true_column in row.index:
        lines.append(f"p of the true class {float(row[true_column]):.2f}")
    return Tile(image, file_link(row["path"]), str(row["video_id"]), tuple(lines), f"{row['path']} ({why})")
