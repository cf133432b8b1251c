"""The ConvLSTM run's report: index.html and its Markdown twin, per-horizon tables, plots, strips and GIFs.

Every score stands beside the three trivial forecasts that could fake it (copy the last frame,
a blank frame, the mean of the context frames), and the papers' metrics stand beside the
published numbers they can be compared with.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.core import atomic
from pipeline.nextframe.config import ConvLSTMConfig
from pipeline.nextframe.moving_mnist import CANVAS, CONTEXT, FRAMES
from pipeline.nextframe.scores import EPSILON, INK
from pipeline.report.figures import literal_text, plot_curves, save_figure
from pipeline.report.pages import render

PUBLISHED = pd.DataFrame(
    [  # the rows of published tables these scores can stand next to
        {
            "predictor": "published: OpenSTL ConvLSTM-S (64x64, real Moving MNIST)",
            "mse_per_frame": 46.26,
            "ssim": 0.878,
            "cross_entropy_per_sequence": np.nan,
        },
        {
            "predictor": "published: Shi et al. 2015, 3-layer ConvLSTM (64x64)",
            "mse_per_frame": np.nan,
            "ssim": np.nan,
            "cross_entropy_per_sequence": 3670.85,
        },
    ]
)

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
    "frames' pixels, averaged over sequences (Shi et al. 2015). A 32x32 score summed over 1024 pixels is "
    "about a quarter "
    "of the 64x64 one; the row 'true frames at model size' is the floor any model at that size has at 64x64.",
    "sharpness = the prediction's edge energy (squared differences of neighbouring pixels, summed) over the "
    "true frame's: "
    "near 1 for sharp digits, near 0 for a grey blob, whose MSE can still beat blank; ink_kept = the share of "
    "true digit "
    f"pixels (above {INK}) that the prediction draws above {INK} too. Both at the model's resolution.",
    "Published numbers are on the real Moving MNIST test set with MNIST digits and far longer training; generated "
    "sequences from other digits are comparable in kind, not to the decimal.",
]


MODEL_NOTE = (
    "The model is the keras-io example's ConvLSTM2D stack (5x5, 3x3, 1x1); its head predicts, for every pixel, a "
    "softmax filter over the pixel's neighbourhood in the current frame (a dynamic filter), which makes the "
    "next frame. "
    "It is trained on the 10 -> 10 forecast with its own predictions fed back as inputs (binary cross-entropy "
    "over all 19 "
    "predicted frames)."
)


def write_report(
    run_dir: Path,
    name: str,
    config: ConvLSTMConfig,
    source: str,
    split: tuple[int, int, int],
    history: pd.DataFrame,
    per_frame: pd.DataFrame,
    summary: pd.DataFrame,
    papers: pd.DataFrame,
    goals: pd.DataFrame,
    metrics: dict,
    truth: np.ndarray,
    one_step: np.ndarray,
    rolled: np.ndarray,
) -> Path:
    """index.html and its Markdown twin report.md, with their images beside them, for the run called `name`.

    Both pages render one list of `pages` blocks, which escape every cell and text (HTML and
    Markdown): names, paths and the data source come from the user.
    """
    save_figure(plot_curves(history, ("loss", "mse")), run_dir / "curves.png")
    save_figure(_plot_tasks(per_frame), run_dir / "per_frame.png")
    examples, animations = [], []
    for i in range(len(truth)):
        save_figure(plot_strip(truth[i], one_step[i], rolled[i]), run_dir / f"example_{i}.png")
        _gif(truth[i], one_step[i], rolled[i], run_dir / f"example_{i}.gif")
        examples.append(("image", f"example_{i}.png", f"example {i}"))
        animations.append((f"example_{i}.gif", f"example {i} animated"))

    missed = goals[~goals["met"].astype(bool)]
    notes = (
        [("warning", f"{len(missed)} of {len(goals)} targets missed: {'; '.join(missed['target'])} (see Targets).")]
        if len(missed)
        else []
    )
    if config.data == "sklearn":
        notes.append(
            (
                "note",
                "Digits are scikit-learn's 8x8 images upscaled, not MNIST: scores are not comparable with published "
                "Moving MNIST results.",
            )
        )
    sections = [
        ("Per horizon", "per-horizon"),
        ("Examples", "examples"),
        ("Targets", "targets"),
        ("Scores", "scores"),
        ("Training", "training"),
        ("Data", "data"),
    ]
    blocks = [
        ("links", [("all runs", "../index.html"), ("this page in Markdown", "report.md")]),
        ("p", _verdict(split, metrics)),
        *notes,
        ("toc", sections),
        ("h2", "MSE per predicted frame", "per-horizon"),
        ("image", "per_frame.png", "per-frame MSE against the baselines"),
        (
            "p",
            f"Rollout: frames {CONTEXT}..{FRAMES - 1} predicted from frames 0..{CONTEXT - 1} alone, each "
            "prediction fed back "
            f"as input. One-step: frames 1..{FRAMES - 1}, each predicted from the true frames before it.",
        ),
        ("h2", "Held-out examples", "examples"),
        (
            "p",
            f"Rows: true frames, one-step predictions, rollout from the first {CONTEXT} frames. The GIFs show "
            "the same three "
            f"side by side (the rollout panel shows the given frames until frame {CONTEXT}).",
        ),
        *examples,
        ("images", animations),
        ("h2", "Targets", "targets"),
        ("table", goals.assign(met=goals["met"].map({True: "yes", False: "NO"}))),
        ("h2", "Scores", "scores"),
        ("h3", "Rollout per horizon"),
        ("table", _shown(per_frame[per_frame["task"] == "rollout"].drop(columns="task"))),
        ("h3", "Held-out scores per task"),
        ("table", _shown(summary)),
        ("h3", "Papers' metrics (rollout, 64x64)"),
        ("table", _shown(pd.concat([papers, PUBLISHED], ignore_index=True))),
        ("details", "Definitions", [("p", line) for line in DEFINITIONS]),
        ("h2", "Training", "training"),
        ("image", "curves.png", "loss curves"),
        ("table", _training_table(history, metrics)),
        ("p", MODEL_NOTE),
        ("h2", "Data", "data"),
        ("table", _data_table(config, source, split)),
        (
            "details",
            "Settings",
            [
                (
                    "table",
                    pd.DataFrame({"": list(config.to_dict()), "value": [str(v) for v in config.to_dict().values()]}),
                )
            ],
        ),
    ]
    title = f"ConvLSTM forecast: {name}"
    html_page, markdown = render(title, blocks)
    atomic.write_text(run_dir / "index.html", html_page)
    atomic.write_text(run_dir / "report.md", markdown)
    return run_dir / "index.html"


def _verdict(split: tuple[int, int, int], metrics: dict) -> str:
    return (
        f"Forecasting frames {CONTEXT}..{FRAMES - 1} from frames 0..{CONTEXT - 1} of {split[2]} held-out "
        "sequences, the "
        f"rollout's MSE is {metrics['rollout_mse']:.5f} against {metrics['rollout_blank_mse']:.5f} for a blank frame, "
        f"{metrics['rollout_copy_last_mse']:.5f} for copying frame {CONTEXT - 1} and "
        f"{metrics['rollout_mean_frame_mse']:.5f} for "
        f"the mean of the context frames; at frame {FRAMES - 1} its sharpness is "
        f"{metrics['sharpness_last_frame']:.2f} and it "
        f"keeps {metrics['ink_kept_last_frame']:.0%} of the digits' pixels; {metrics['targets_met']} of "
        f"{metrics['targets']} "
        f"targets met. One step ahead its MSE is {metrics['one_step_mse']:.5f} against "
        f"{metrics['one_step_copy_last_mse']:.5f} "
        f"for copying the last frame. {_budget_text(metrics)}"
    )


def _budget_text(metrics: dict) -> str:
    """How long it trained, and what a time budget (`--time-budget`) made of the epochs."""
    trained = f"Trained {metrics['epochs_run']} epochs in {metrics['train_seconds']:.0f} s ({metrics['stopped_by']})"
    if not metrics.get("time_budget_minutes"):
        return trained + "."
    return (
        f"{trained} within a time budget of {metrics['time_budget_minutes']:g} min for the whole run, which planned "
        f"{metrics['epochs_planned']} epochs of about {metrics['estimated_epoch_seconds']:.0f} s each after "
        f"{metrics['tracing_seconds']:.0f} s of tracing; more epochs, on a faster machine or with a larger budget, "
        "forecast better."
    )


def _data_table(config: ConvLSTMConfig, source: str, split: tuple[int, int, int]) -> pd.DataFrame:
    size = f"{FRAMES} x {config.frame_size}x{config.frame_size} (block means of {CANVAS}x{CANVAS})"
    return pd.DataFrame(
        {
            "": ["source", "sequences (train / validation / test)", "model frames"],
            "value": [source, " / ".join(map(str, split)), size],
        }
    )


def _training_table(history: pd.DataFrame, metrics: dict) -> pd.DataFrame:
    rate = f"{history['learning_rate'].iloc[-1]:.2g}" if "learning_rate" in history else ""
    return pd.DataFrame(
        {
            "": [
                "training time",
                "time per epoch",
                "load average during training",
                "epochs run (best)",
                "ended by",
                "time budget (whole run)",
                "parameters",
                "final learning rate",
            ],
            "value": [
                f"{metrics['train_seconds']:.0f} s",
                f"{metrics['seconds_per_epoch']:.0f} s",
                f"{metrics['load_average']} on {metrics['cores']} cores",
                f"{metrics['epochs_run']} ({metrics['best_epoch']})",
                metrics.get("stopped_by", ""),
                f"{metrics['time_budget_minutes']:g} min" if metrics.get("time_budget_minutes") else "none",
                f"{metrics['parameters']:,}",
                rate,
            ],
        }
    )


def _shown(frame: pd.DataFrame) -> pd.DataFrame:
    """Floats as text to 6 significant digits (the scores are small), NaN blank."""
    return frame.map(lambda value: ("" if np.isnan(value) else f"{value:.6g}") if isinstance(value, float) else value)


@literal_text  # figure text is never parsed as math
def plot_per_frame(rows: pd.DataFrame, ax=None):
    """MSE per predicted frame of one task's `rows`, the model against the three baselines, on `ax` (or a new
    figure's)."""
    if ax is None:
        ax = Figure(figsize=(6, 3.5)).subplots()
    lines = (
        ("mse", "ConvLSTM", "-", "o"),
        ("copy_last_mse", "copy last frame", "--", None),
        ("blank_mse", "blank", ":", None),
        ("mean_frame_mse", "mean of context", "-.", None),
    )
    for column, label, style, marker in lines:
        ax.plot(rows["frame"], rows[column], linestyle=style, marker=marker, label=label)
    ax.set_title(str(rows["task"].iloc[0]))
    ax.set_xlabel("predicted frame")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))  # frames are whole numbers
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


@literal_text
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
    pixels = [
        np.kron((frames[..., 0] * 255).round().astype(np.uint8), np.ones((1, scale, scale), np.uint8))
        for frames in panels
    ]
    gap = np.full((FRAMES, truth.shape[1] * scale, 4), 128, np.uint8)
    movie = np.concatenate([pixels[0], gap, pixels[1], gap, pixels[2]], axis=2)
    images = [Image.fromarray(frame) for frame in movie]
    with atomic.replacing(path) as temporary:
        images[0].save(temporary, format="GIF", save_all=True, append_images=images[1:], duration=200, loop=0)
