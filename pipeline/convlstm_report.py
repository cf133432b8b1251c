"""The ConvLSTM run's report: index.html and its Markdown twin, per-horizon tables, plots, strips and GIFs.

Every score stands beside the three trivial forecasts that could fake it (copy the last frame,
a blank frame, the mean of the context frames), and the papers' metrics stand beside the
published numbers they can be compared with.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import report
from .convlstm import EPSILON, ConvLSTMConfig
from .moving_mnist import CANVAS, CONTEXT, FRAMES

PUBLISHED = pd.DataFrame([  # the rows of published tables these scores can stand next to
    {"predictor": "published: OpenSTL ConvLSTM-S (64x64, real Moving MNIST)", "mse_per_frame": 46.26, "ssim": 0.878,
     "cross_entropy_per_sequence": np.nan},
    {"predictor": "published: Shi et al. 2015, 3-layer ConvLSTM (64x64)", "mse_per_frame": np.nan, "ssim": np.nan,
     "cross_entropy_per_sequence": 3670.85},
])

DEFINITIONS = [
    "mse, bce, ssim and the baselines' *_mse (per_frame.csv, per-horizon tables): means over held-out sequences and "
    "pixels (values 0..1) at the model's resolution; BCE clips probabilities to "
    f"[{EPSILON:g}, 1-{EPSILON:g}] as Keras does.",
    "Baselines: copy last frame (the last true frame the model was given), blank (all zeros: its MSE is the mean "
    "squared truth), mean of the context frames (of frames 0..9 for the rollout, of all frames before the predicted "
    "one for one-step).",
    f"Papers' metrics, on the {CANVAS}x{CANVAS} originals (model frames upscaled by repeating pixels): "
    "MSE per frame = squared error summed over the frame's 4096 pixels, averaged over frames 10..19 and sequences "
    "(PredRNN and OpenSTL report it this way); SSIM = mean structural similarity per frame (tf.image.ssim: 11x11 "
    "Gaussian window, sigma 1.5); cross-entropy per sequence = binary cross-entropy summed over the 10 predicted "
    "frames' pixels, averaged over sequences (Shi et al. 2015). A 32x32 score summed over 1024 pixels is about a quarter "
    "of the 64x64 one; the row 'true frames at model size' is the floor any model at that size has at 64x64.",
    "Published numbers are on the real Moving MNIST test set with MNIST digits and far longer training; generated "
    "sequences from other digits are comparable in kind, not to the decimal.",
]


def write_report(run_dir: Path, name: str, config: ConvLSTMConfig, source: str, split: tuple[int, int, int], history: pd.DataFrame,
                 per_frame: pd.DataFrame, summary: pd.DataFrame, papers: pd.DataFrame, goals: pd.DataFrame, metrics: dict,
                 truth: np.ndarray, one_step: np.ndarray, rolled: np.ndarray) -> Path:
    """index.html and its Markdown twin report.md, with their images beside them, for the run called `name`.

    Names, paths and the data source come from the user: every HTML cell and text is escaped and
    every Markdown cell, title and note Markdown-escaped (`report.markdown_text`).
    """
    report.plot_curves(history, run_dir / "curves.png", metrics=("loss", "mse"))
    _save(_plot_tasks(per_frame), run_dir / "per_frame.png")
    examples = []
    for i in range(len(truth)):
        _save(plot_strip(truth[i], one_step[i], rolled[i]), run_dir / f"example_{i}.png")
        _gif(truth[i], one_step[i], rolled[i], run_dir / f"example_{i}.gif")
        examples.append(f"example_{i}")

    rollout = per_frame[per_frame["task"] == "rollout"].drop(columns="task")
    verdict = (f"Forecasting frames {CONTEXT}..{FRAMES - 1} from frames 0..{CONTEXT - 1} of {split[2]} held-out sequences, the rollout's "
               f"MSE is {metrics['rollout_mse']:.5f} against {metrics['rollout_blank_mse']:.5f} for a blank frame, "
               f"{metrics['rollout_copy_last_mse']:.5f} for copying frame {CONTEXT - 1} and {metrics['rollout_mean_frame_mse']:.5f} for the "
               f"mean of the context frames; {metrics['targets_met']} of {metrics['targets']} targets met. One step ahead its MSE is "
               f"{metrics['one_step_mse']:.5f} against {metrics['one_step_copy_last_mse']:.5f} for copying the last frame.")
    notes = [f"Target missed: {row.target} ({row.measured})." for row in goals.itertuples() if not row.met]
    if config.data == "sklearn":
        notes.append("Digits are scikit-learn's 8x8 images upscaled, not MNIST: scores are not comparable with published Moving MNIST results.")
    data_table = pd.DataFrame({"": ["source", "sequences (train / validation / test)", "model frames"],
                               "value": [source, " / ".join(map(str, split)), f"{FRAMES} x {config.frame_size}x{config.frame_size} (block means of {CANVAS}x{CANVAS})"]})
    training_table = pd.DataFrame({
        "": ["training time", "time per epoch", "load average during training", "epochs run (best)", "parameters", "final learning rate"],
        "value": [f"{metrics['train_seconds']:.0f} s", f"{metrics['seconds_per_epoch']:.0f} s", f"{metrics['load_average']} on {metrics['cores']} cores",
                  f"{metrics['epochs_run']} ({metrics['best_epoch']})", f"{metrics['parameters']:,}",
                  f"{history['learning_rate'].iloc[-1]:.2g}" if "learning_rate" in history else ""]})
    settings = pd.DataFrame({"": list(config.to_dict()), "value": [str(v) for v in config.to_dict().values()]})
    goals_shown = goals.assign(met=goals["met"].map({True: "yes", False: "NO"}))
    paper_table = pd.concat([papers, PUBLISHED], ignore_index=True)
    about = (f"Rollout: frames {CONTEXT}..{FRAMES - 1} predicted from frames 0..{CONTEXT - 1} alone, each prediction fed back as input. "
             f"One-step: frames 1..{FRAMES - 1}, each predicted from the true frames before it.")
    model_note = ("The model is the keras-io example's ConvLSTM2D stack (5x5, 3x3, 1x1) with a causal 1x3x3 head, trained on the "
                  "10 -> 10 forecast with its own predictions fed back as inputs (binary cross-entropy over all 19 predicted frames).")

    sections = [
        ("Targets", goals_shown, None),
        ("Rollout per horizon", rollout, about),
        ("Held-out scores per task", summary, None),
        ("Papers' metrics (rollout, 64x64)", paper_table, None),
    ]
    html_body = "".join([
        "".join(report.warning(note) for note in notes), f"<p>{html.escape(verdict)}</p>",
        "<h2>Data</h2>", report.table(data_table),
        *[f"<h2>{html.escape(title)}</h2>{report.table(frame, '{:.6g}')}" + (f"<p class='muted'>{html.escape(text)}</p>" if text else "") for title, frame, text in sections],
        "<h2>Definitions</h2><ul>", *[f"<li>{html.escape(line)}</li>" for line in DEFINITIONS], "</ul>",
        "<img src='per_frame.png' alt='per-frame MSE against the baselines'>",
        "<h2>Training</h2>", report.table(training_table), "<img src='curves.png' alt='loss curves'>", f"<p class='muted'>{html.escape(model_note)}</p>",
        "<h2>Held-out examples</h2><p class='muted'>Rows: true frames, one-step predictions, rollout from the first "
        f"{CONTEXT} frames. The GIFs show the same three side by side (the rollout panel shows the given frames until frame {CONTEXT}).</p>",
        "".join(f"<p><img src='{name}.png' alt='{name}'><br><img src='{name}.gif' alt='{name} animated'></p>" for name in examples),
        "<h2>Settings</h2>", report.table(settings),
    ])
    (run_dir / "index.html").write_text(report.page(f"ConvLSTM forecast: {name}", html_body))
    markdown = "\n\n".join([
        f"# ConvLSTM forecast: {report.markdown_text(name)}", *[f"> {report.markdown_text(note)}" for note in notes], report.markdown_text(verdict),
        "## Data", markdown_table(data_table),
        *[f"## {report.markdown_text(title)}\n\n{markdown_table(frame)}" + (f"\n\n{report.markdown_text(text)}" if text else "") for title, frame, text in sections],
        "## Definitions", "\n".join(f"- {report.markdown_text(line)}" for line in DEFINITIONS), "![per-frame MSE](per_frame.png)",
        "## Training", markdown_table(training_table), "![loss curves](curves.png)", report.markdown_text(model_note),
        "## Held-out examples", *[f"![{name}]({name}.png)\n\n![{name} animated]({name}.gif)" for name in examples],
        "## Settings", markdown_table(settings),
    ])
    (run_dir / "report.md").write_text(markdown + "\n")
    return run_dir / "index.html"


def markdown_table(frame: pd.DataFrame) -> str:
    """`report`'s Markdown table with floats to 6 significant digits (the scores are small)."""
    return report._markdown_table(frame.map(lambda value: f"{value:.6g}" if isinstance(value, float) and not np.isnan(value) else value))


def _save(figure, path: Path) -> Path:
    figure.savefig(path, dpi=100)
    return path


@report.literal_text  # figure text is never parsed as math
def plot_per_frame(rows: pd.DataFrame, ax=None):
    """MSE per predicted frame of one task's `rows`, the model against the three baselines, on `ax` (or a new figure's)."""
    if ax is None:
        ax = Figure(figsize=(6, 3.5)).subplots()
    lines = (("mse", "ConvLSTM", "-", "o"), ("copy_last_mse", "copy last frame", "--", None), ("blank_mse", "blank", ":", None),
             ("mean_frame_mse", "mean of context", "-.", None))
    for column, label, style, marker in lines:
        ax.plot(rows["frame"], rows[column], linestyle=style, marker=marker, label=label)
    ax.set_title(str(rows["task"].iloc[0]))
    ax.set_xlabel("predicted frame")
    ax.set_ylabel("MSE")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax.figure


def _plot_tasks(per_frame: pd.DataFrame):
    """One `plot_per_frame` panel per task, side by side."""
    tasks = list(per_frame["task"].unique())
    figure = Figure(figsize=(6 * len(tasks), 3.5), layout="tight")
    for ax, task in zip(figure.subplots(1, len(tasks), squeeze=False)[0], tasks):
        plot_per_frame(per_frame[per_frame["task"] == task], ax)
    return figure


@report.literal_text
def plot_strip(truth: np.ndarray, one_step: np.ndarray, rolled: np.ndarray):
    """A grid: true frames 0..19 over one-step predictions (1..19) over the rollout (10..19)."""
    rows = (("true", 0, truth), ("one-step", 1, one_step), ("rollout", CONTEXT, rolled))
    figure = Figure(figsize=(FRAMES * 0.75, len(rows) * 0.85))
    axes = figure.subplots(len(rows), FRAMES, squeeze=False)
    for r, (label, first, frames) in enumerate(rows):
        for t, ax in enumerate(axes[r]):
            ax.set_xticks([])
            ax.set_yticks([])
            if t >= first:
                ax.imshow(frames[t - first, ..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                ax.set_frame_on(False)  # not axis("off"): that would hide the row label too
        axes[r, 0].set_ylabel(label, fontsize=8)
    for t, ax in enumerate(axes[0]):
        ax.set_title(str(t), fontsize=8)
    figure.subplots_adjust(left=0.05, right=0.995, top=0.85, bottom=0.02, wspace=0.05, hspace=0.1)
    return figure


def _gif(truth: np.ndarray, one_step: np.ndarray, rolled: np.ndarray, path: Path, height: int = 128) -> None:
    """An animated GIF of true | one-step | rollout panels, frames 0..19, scaled up without smoothing."""
    from PIL import Image

    panels = [truth, np.concatenate([np.zeros_like(truth[:1]), one_step]), np.concatenate([truth[:CONTEXT], rolled])]
    scale = max(1, height // truth.shape[1])
    pixels = [np.kron((frames[..., 0] * 255).round().astype(np.uint8), np.ones((1, scale, scale), np.uint8)) for frames in panels]
    gap = np.full((FRAMES, truth.shape[1] * scale, 4), 128, np.uint8)
    movie = np.concatenate([pixels[0], gap, pixels[1], gap, pixels[2]], axis=2)
    images = [Image.fromarray(frame) for frame in movie]
    images[0].save(path, save_all=True, append_images=images[1:], duration=200, loop=0)
