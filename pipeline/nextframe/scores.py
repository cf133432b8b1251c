"""How a Moving MNIST forecast is scored: per frame against three trivial forecasts, in the papers' metrics, and by
whether the digits are still there.

MSE alone is not enough: a blank frame beats copying the last one on sparse digits, and a grey
blob of the right mass and place beats both while showing no digit; so every score has its
baselines beside it, and `visibility` measures what MSE does not.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.nextframe.moving_mnist import CONTEXT, FRAMES, upscale

EPSILON = 1e-7  # probability clipping for binary cross-entropy, as in Keras
INK = 0.5  # a pixel brighter than this is part of a digit
VISIBLE = 0.5  # sharpness and ink kept from which the digits count as visible (judged against the strips)
PER_FRAME_COLUMNS = [
    "task",
    "frame",
    "mse",
    "bce",
    "ssim",
    "copy_last_mse",
    "blank_mse",
    "mean_frame_mse",
    "sharpness",
    "ink_kept",
]


def evaluate(one_step: np.ndarray, rolled: np.ndarray, sequences: np.ndarray, originals: np.ndarray) -> dict:
    """Score the predictions of held-out `sequences` `(N, 20, S, S, 1)`, whose 64x64 `originals` are `(N, 20, 64, 64)`
    uint8:
    `one_step`, frames 1..19 each from the true frames before it, and `rolled`, frames 10..19 from frames 0..9 alone.

    Returns `per_frame` (tasks `one-step` and `rollout`) with the three baselines beside the model,
    `papers` (the rollout in the published metrics, at 64x64), the `intensity_ratio` of the
    predicted to the true last frame, and both predictions.
    """
    seen = np.arange(1, FRAMES)[None, :, None, None, None]
    per_frame = pd.concat(
        [
            frame_scores(
                "one-step",
                1,
                sequences[:, 1:],
                one_step,
                copy_last=sequences[:, :-1],
                mean_frame=np.cumsum(sequences[:, :-1], axis=1) / seen,
            ),  # the mean of all frames before each
            frame_scores(
                "rollout",
                CONTEXT,
                sequences[:, CONTEXT:],
                rolled,
                copy_last=sequences[:, CONTEXT - 1 : CONTEXT],
                mean_frame=sequences[:, :CONTEXT].mean(axis=1, keepdims=True),
            ),
        ],
        ignore_index=True,
    )
    truth = originals[..., None].astype(np.float32) / 255
    candidates = {
        "ConvLSTM (upscaled)": upscale(rolled),
        "copy last frame": truth[:, CONTEXT - 1 : CONTEXT],
        "blank": np.zeros_like(truth[:, :1]),
        "mean of the context frames": truth[:, :CONTEXT].mean(axis=1, keepdims=True),
        "true frames at model size (resolution floor)": upscale(sequences[:, CONTEXT:]),
    }
    papers = pd.DataFrame(
        [{"predictor": name, **paper_scores(truth[:, CONTEXT:], predicted)} for name, predicted in candidates.items()]
    )
    intensity_ratio = float(rolled[:, -1].sum() / sequences[:, -1].sum())
    return {
        "per_frame": per_frame,
        "papers": papers,
        "intensity_ratio": intensity_ratio,
        "one_step": one_step,
        "rolled": rolled,
    }


def frame_scores(
    task: str, first: int, truth: np.ndarray, predicted: np.ndarray, copy_last: np.ndarray, mean_frame: np.ndarray
) -> pd.DataFrame:
    """Per predicted frame: the model's MSE, BCE and SSIM, and the MSE of the three trivial predictors.

    All arrays are `(N, T, S, S, 1)` (baselines may have T = 1); scores are means over sequences and
    pixels in 0..1. The blank prediction (all zeros) scores the mean squared truth.
    """

    def mse(guess):
        return ((np.broadcast_to(guess, truth.shape) - truth) ** 2).mean(axis=(0, 2, 3, 4))

    return pd.DataFrame(
        {
            "task": task,
            "frame": np.arange(first, first + truth.shape[1]),
            "mse": mse(predicted),
            "bce": _bce(truth, predicted).mean(axis=(0, 2, 3, 4)),
            "ssim": ssim(truth, predicted).mean(axis=0),
            "copy_last_mse": mse(copy_last),
            "blank_mse": mse(0),
            "mean_frame_mse": mse(mean_frame),
            **visibility(truth, predicted),
        },
        columns=PER_FRAME_COLUMNS,
    )


def visibility(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Whether the digits are still there, per frame of `(N, T, S, S, 1)` arrays: not measured by MSE, which a grey
    blob scores well.

    `sharpness`: the predicted frames' edge energy (squared differences between neighbouring
    pixels, summed) over the true frames' (1 for sharp digits, near 0 for a blur); `ink_kept`: the
    share of the true digit pixels (above INK) that the prediction also draws above INK.
    """

    def edges(frames):
        return (np.diff(frames, axis=2) ** 2).sum(axis=(0, 2, 3, 4)) + (np.diff(frames, axis=3) ** 2).sum(
            axis=(0, 2, 3, 4)
        )

    ink = truth > INK
    return {
        "sharpness": edges(predicted) / np.maximum(edges(truth), EPSILON),
        "ink_kept": (ink & (predicted > INK)).sum(axis=(0, 2, 3, 4)) / np.maximum(ink.sum(axis=(0, 2, 3, 4)), 1),
    }


def paper_scores(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """The published Moving MNIST metrics of a forecast `(N, 10, 64, 64, 1)`, values 0..1.

    `mse_per_frame`: squared error summed over a frame's pixels, averaged over frames and sequences
    (PredRNN, OpenSTL); `ssim`: mean SSIM per frame; `cross_entropy_per_sequence`: binary
    cross-entropy summed over the ten frames' pixels, averaged over sequences (Shi et al. 2015).
    """
    predicted = np.broadcast_to(predicted, truth.shape)
    return {
        "mse_per_frame": float(((predicted - truth) ** 2).sum(axis=(2, 3, 4)).mean()),
        "ssim": float(ssim(truth, predicted).mean()),
        "cross_entropy_per_sequence": float(_bce(truth, predicted).sum(axis=(1, 2, 3, 4)).mean()),
    }


def ssim(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """SSIM `(N, T)` of each frame of `(N, T, S, S, 1)` arrays in 0..1 (Wang et al. 2004: 11x11 Gaussian window, sigma
    1.5)."""
    import tensorflow as tf

    shape = np.broadcast_shapes(truth.shape, predicted.shape)
    frames = [np.broadcast_to(x, shape).reshape((-1,) + shape[2:]) for x in (truth, predicted)]
    values = tf.image.ssim(*frames, max_val=1.0, filter_size=min(11, shape[2])).numpy()
    return values.reshape(shape[:2])


def _bce(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    p = np.clip(predicted, EPSILON, 1 - EPSILON)
    return -(truth * np.log(p) + (1 - truth) * np.log(1 - p))


def summarise(per_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per task: scores averaged over its frames, and the model's MSE as a share of the best baseline's."""
    summary = per_frame.drop(columns="frame").groupby("task", sort=False).mean().reset_index()
    summary["mse_to_blank"] = summary["mse"] / summary["blank_mse"]
    summary["mse_to_best_baseline"] = summary["mse"] / summary[["copy_last_mse", "blank_mse", "mean_frame_mse"]].min(
        axis=1
    )
    return summary


def targets(per_frame: pd.DataFrame, intensity_ratio: float) -> pd.DataFrame:
    """The issue's targets for the rollout, each with its measured value and whether it is met."""
    rolled = per_frame[per_frame["task"] == "rollout"]
    below_blank = int((rolled["mse"] < rolled["blank_mse"]).sum())
    below_copy = int((rolled["mse"] < rolled["copy_last_mse"]).sum())
    to_blank = rolled["mse"].mean() / rolled["blank_mse"].mean()
    horizon, last = len(rolled), rolled.iloc[-1]
    visible = last["sharpness"] >= VISIBLE and last["ink_kept"] >= VISIBLE
    return pd.DataFrame(
        [
            ("rollout MSE below blank at every horizon", f"{below_blank} of {horizon} frames", below_blank == horizon),
            (
                "rollout MSE below copy-last at every horizon",
                f"{below_copy} of {horizon} frames",
                below_copy == horizon,
            ),
            ("mean rollout MSE <= 0.7 x blank", f"{to_blank:.2f} x blank", to_blank <= 0.7),
            (
                f"predicted / true intensity at frame {FRAMES - 1} in 0.5..1.5",
                f"{intensity_ratio:.2f}",
                0.5 <= intensity_ratio <= 1.5,
            ),
            (
                f"digits visible at frame {FRAMES - 1}: sharpness and ink kept >= {VISIBLE}",
                f"sharpness {last['sharpness']:.2f}, ink kept {last['ink_kept']:.2f}",
                visible,
            ),
        ],
        columns=["target", "measured", "met"],
    )
