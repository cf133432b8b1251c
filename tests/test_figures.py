"""Figures the scikit-learn way: drawn on the axes a caller gives, returned, saved by one helper, no pyplot."""

import subprocess
import sys

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from pipeline.report.figures import plot_confusion, plot_curves, plot_window_track, save_figure

LABELS = ["up", "a $5 tip"]


def window_track() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "video": ["/videos/clip.mp4"] * 3,
            "start_s": [0.0, 1.0, 2.0],
            "end_s": [1.0, 2.0, 3.0],
            "smoothed:up": [0.9, 0.6, 0.2],
            "smoothed:a $5 tip": [0.1, 0.4, 0.8],
            "smoothed_label": ["up", "up", "a $5 tip"],
        }
    )


def test_plots_draw_on_the_axes_they_are_given_and_return_that_figure(tmp_path):
    fig = Figure(figsize=(12, 8))
    axes = fig.subplots(2, 3)
    matrix = pd.DataFrame([[3, 1], [0, 4]], index=LABELS, columns=LABELS)
    history = pd.DataFrame({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7], "accuracy": [0.5, 0.9]})
    assert plot_confusion(matrix, "counts", ax=axes[0, 0]) is fig
    assert plot_curves(history, ("loss", "accuracy"), axes=axes[0, 1:]) is fig
    assert plot_window_track(window_track(), LABELS, axes=axes[1, :2]) is fig
    assert len(axes[0, 0].images) == 1 and [t.get_text() for t in axes[0, 0].texts] == ["3", "1", "0", "4"]
    assert [line.get_label() for line in axes[0, 1].lines] == ["train", "validation"] and axes[
        0, 2
    ].get_title() == "accuracy"
    assert len(axes[1, 0].lines) == 2 and len(axes[1, 1].patches) == 3 and not axes[1, 2].has_data()
    assert save_figure(fig, tmp_path / "all.png").stat().st_size > 0


def test_plots_without_axes_make_their_own_figure():
    matrix = pd.DataFrame(
        np.eye(40, dtype=int) * 2, index=[f"c{i}" for i in range(40)], columns=[f"c{i}" for i in range(40)]
    )
    first, second = plot_confusion(matrix, "big"), plot_confusion(matrix, "big")
    assert first is not second and isinstance(first, Figure)
    assert (
        first.get_size_inches()[1] == 10.5 and not first.axes[0].texts
    )  # 0.2 * 40 + 2.5 inches; too many classes to annotate
    assert len(plot_curves(pd.DataFrame({"loss": [1.0, 0.5]})).axes) == 1
    assert len(plot_window_track(window_track(), LABELS).axes) == 2


def test_drawing_and_saving_keep_the_users_backend_and_never_load_pyplot(tmp_path):
    """A notebook user's backend stays theirs: nothing calls matplotlib.use or goes through pyplot."""
    code = f"""
import sys, matplotlib
matplotlib.use("svg")
import pandas as pd
from pipeline.predict import videos
from pipeline.report import figures
from pipeline.report import classification as report
from pipeline.classify import train
matrix = pd.DataFrame([[1, 0], [2, 3]], index=["x", "y"], columns=["x", "y"])
figures.save_figure(figures.plot_confusion(matrix, "t", normalized=True), {str(tmp_path / "cm.png")!r})
report.plot_curves(pd.DataFrame({{"loss": [1.0, 0.5]}}), {str(tmp_path / "curves.png")!r})
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["svg", "False"], result.stderr
    assert (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG" and (tmp_path / "curves.png").stat().st_size > 0
