"""The report figures, drawn the scikit-learn way: on axes a caller gives (or new ones), returning the figure.

Figures are built on `matplotlib.figure.Figure`, never through pyplot, so drawing one neither needs
a display nor switches the backend of a notebook that imports the package; `save_figure` writes a
PNG. Labels and titles come from users' class names and file names, so figure text is taken
literally (`literal_text`): a `$` is a dollar sign, not math that could fail to parse.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import atomic

ANNOTATE_MAX = 20  # confusion matrices up to this many classes print their numbers in the cells
CLUSTER_MIN = 30  # from this many classes on, the confusion figure orders classes by mutual confusion
DPI = 100


def literal_text(plot):
    """Run a plotting function with figure text taken literally: a `$` in a label is a dollar sign, not math."""

    @functools.wraps(plot)
    def plot_literally(*args, **kwargs):
        with _literal():
            return plot(*args, **kwargs)

    return plot_literally


def save_figure(fig, path: str | Path) -> Path:
    """Write `fig` as a PNG at `path` (text drawn on saving is literal too) and return the path.

    The PNG replaces `path` in one step (`core.atomic`): a link planted at that name is replaced, not written
    through."""
    with _literal(), atomic.replacing(path) as temporary:
        fig.savefig(temporary, dpi=DPI, format="png")
    return Path(path)


def new_axes(rows: int = 1, columns: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **subplots):
    """A new figure's (rows, columns) array of axes, for plot functions called without axes."""
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).subplots(rows, columns, squeeze=False, **subplots)


@literal_text
def plot_curves(history: pd.DataFrame, metrics: tuple[str, ...] = ("loss", "accuracy"), axes=None):
    """Training curves from a Keras history table: one panel per metric (on `axes`, one per metric
    shown), train and `val_` lines, epochs as whole numbers; returns the figure."""
    from matplotlib.ticker import MaxNLocator

    shown = [m for m in metrics if m in history.columns]
    if axes is None:
        axes = new_axes(1, max(1, len(shown)), figsize=(5 * max(1, len(shown)), 3.5))[0]
    epochs = history["epoch"] + 1 if "epoch" in history.columns else range(1, len(history) + 1)
    dots = "o" if len(history) < 3 else None  # a line of one or two epochs would hardly show
    for axis, metric in zip(axes, shown):
        axis.plot(epochs, history[metric], label="train", marker=dots)
        if f"val_{metric}" in history.columns:
            axis.plot(epochs, history[f"val_{metric}"], label="validation", marker=dots)
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # no epoch 1.25
        if len(history) == 1:
            axis.set_xlim(0.5, 1.5)  # else the view is 0.95..1.05, with no whole number inside but 1
        axis.set_title(metric)
        axis.grid(alpha=0.3)
        axis.legend()
    axes[0].figure.tight_layout()
    return axes[0].figure


@literal_text
def plot_confusion(matrix: pd.DataFrame, title: str, normalized: bool = False, ax=None):
    """A confusion matrix (rows true, columns predicted), readable from a handful of classes to a hundred and more.

    A new figure and the label font scale with the class count; cells carry their numbers up to
    ANNOTATE_MAX classes; from CLUSTER_MIN classes on, classes are ordered so that the ones often
    confused with each other sit side by side (the CSV keeps the label order). Returns the figure.
    """
    order = display_order(matrix) if len(matrix) >= CLUSTER_MIN else list(matrix.index)
    shown = matrix.loc[order, order]
    n = len(shown)
    inches = min(30.0, max(5.0, 0.2 * n + 2.5))
    font = 10 if n <= 15 else 8 if n <= 40 else 6
    ax = ax if ax is not None else new_axes(figsize=(inches + 1, inches))[0, 0]
    values = shown.to_numpy(dtype=float)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalized else max(1.0, np.nanmax(values, initial=0)))
    ax.set_xticks(range(n), shown.columns, rotation=90, fontsize=font)
    ax.set_yticks(range(n), shown.index, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title + (" (classes ordered by mutual confusion)" if order != list(matrix.index) else ""))
    if n <= ANNOTATE_MAX:
        threshold = np.nanmax(values, initial=0) / 2
        for (row, column), value in np.ndenumerate(values):
            if not np.isnan(value):
                ax.text(
                    column,
                    row,
                    f"{value:.2f}" if normalized else f"{value:.0f}",
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if value > threshold else "black",
                )
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.figure.tight_layout()
    return ax.figure


@literal_text
def plot_window_track(track: pd.DataFrame, labels: list[str], axes=None):
    """One video's smoothed class probabilities over its windows (`axes[0]`), with the smoothed label of
    each window underneath (`axes[1]`); `track` is a video's rows of predict's windows.csv. Returns the figure."""
    from matplotlib import colormaps

    if axes is None:
        axes = new_axes(2, 1, figsize=(10, 4.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]})[:, 0]
    top, bottom = axes
    centres = (track["start_s"] + track["end_s"]) / 2
    for label in labels:
        top.plot(centres, track[f"smoothed:{label}"], label=label)
    top.set_ylabel("probability (smoothed)")
    top.set_ylim(0, 1)
    top.legend(fontsize=8, ncol=min(4, len(labels)), loc="upper right")
    top.set_title(Path(track["video"].iloc[0]).name)
    colours = colormaps["tab20"]
    for row in track.itertuples():
        bottom.axvspan(row.start_s, row.end_s, color=colours(labels.index(row.smoothed_label) % 20), alpha=0.6)
        bottom.text(
            (row.start_s + row.end_s) / 2, 0.5, row.smoothed_label, ha="center", va="center", fontsize=7, rotation=90
        )
    bottom.set_yticks([])
    bottom.set_xlabel("seconds")
    top.figure.tight_layout()
    return top.figure


def display_order(matrix: pd.DataFrame) -> list:
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


@contextlib.contextmanager
def _literal():
    import matplotlib

    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        yield
