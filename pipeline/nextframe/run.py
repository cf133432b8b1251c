"""A ConvLSTM next-frame run: Moving MNIST in, a trained forecaster, its scores against the baselines and its report
out.

The model and why it is built so: `nextframe.model`; the scores: `nextframe.scores`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core import atomic
from pipeline.core.device import log_tensorflow_device
from pipeline.nextframe.budget import EpochPlan
from pipeline.nextframe.config import ConvLSTMConfig
from pipeline.nextframe.model import build_model, predict, train
from pipeline.nextframe.moving_mnist import (
    model_frames,
    moving_mnist,
    split_sizes,
)
from pipeline.nextframe.scores import evaluate, summarise, targets
from pipeline.report.index import write_index
from pipeline.runs import folders
from pipeline.runs.files import write_run_summary

log = logging.getLogger(__name__)


def default_run_dir(config: ConvLSTMConfig, reports_root: str | Path = "reports") -> Path:
    """reports/convlstm-<data>, the data named `sklearn` or by its file or folder name."""
    return Path(reports_root) / f"convlstm-{data_name(config)}"


def data_name(config: ConvLSTMConfig) -> str:
    return "sklearn" if config.data == "sklearn" else Path(config.data).name.split(".")[0]


def run_convlstm(config: ConvLSTMConfig, run_dir: str | Path, overwrite: bool = False) -> dict:
    """Data, training, held-out evaluation and the report in `run_dir`; returns the headline metrics.

    `run_dir` gets `model/` (model.keras, config.json, history.csv, per_frame.csv, papers.csv,
    metrics.json), the report (index.html, report.md, images) and run.json; the index of its parent
    folder is rewritten so the run is listed. As for classification runs (`rundir`), the run is
    written into a temporary sibling that replaces `run_dir` only when complete, and only a run
    directory the tool made is replaced, and only with `overwrite`.
    """
    started = time.perf_counter()  # a time budget counts from here: it is the whole command's
    run_dir = Path(run_dir)
    folders.check_replaceable(run_dir, overwrite)  # refused before the data is read or a model built
    with folders.staged_run(run_dir, overwrite) as staging:
        metrics = _run_into(staging, run_dir.name, config, started)
    write_index(run_dir.parent)
    return metrics


def _run_into(run_dir: Path, name: str, config: ConvLSTMConfig, started: float) -> dict:
    """The whole run written into `run_dir` (a staging folder), reported under the run's `name`.

    With `config.time_budget`, the epochs are planned to end the run `time_budget` minutes after
    `started` (`budget.EpochPlan`); what the plan did goes into metrics.json and the report.
    """
    import os

    import keras

    from pipeline.nextframe.report import write_report

    model_dir = run_dir / "model"
    model_dir.mkdir()
    frames, source = moving_mnist(config.data, config.sequences, config.seed, config.test_fraction)
    sequences = model_frames(frames, config.frame_size)
    n_train, n_val, n_test = split_sizes(len(sequences), config.val_fraction, config.test_fraction)
    train_set, val_set, test_set = np.split(sequences, [n_train, n_train + n_val])
    test_originals = frames[:, n_train + n_val :].transpose(1, 0, 2, 3)
    log.info(
        "data: %s; %d train, %d validation, %d test sequences at %dx%d",
        source,
        n_train,
        n_val,
        n_test,
        config.frame_size,
        config.frame_size,
    )

    log_tensorflow_device()
    keras.utils.set_random_seed(config.seed)
    model = build_model(config.frame_size, config.filters)
    checkpoint = model_dir / "model.keras"
    load_before = os.getloadavg()[0]
    plan = EpochPlan(config.time_budget * 60, started, config.epochs) if config.time_budget else None
    train_started = time.perf_counter()
    history = train(model, train_set, val_set, config, checkpoint, plan)
    train_seconds = time.perf_counter() - train_started
    best = keras.models.load_model(
        checkpoint, safe_mode=True
    )  # safe_mode=True: a checkpoint never runs code when loaded
    scores = evaluate(*predict(best, test_set, config.batch_size), test_set, test_originals)
    per_frame, papers = scores["per_frame"], scores["papers"]
    summary = summarise(per_frame)
    goals = targets(per_frame, scores["intensity_ratio"])

    metrics = _metrics(summary, papers, per_frame, goals, scores["intensity_ratio"])
    metrics.update(
        train_seconds=round(train_seconds, 1),
        seconds_per_epoch=round(float(history["seconds"].mean()), 1),
        load_average=round((load_before + os.getloadavg()[0]) / 2, 1),
        cores=os.cpu_count(),
        epochs_run=len(history),
        best_epoch=int(history["val_loss"].idxmin()) + 1,
        parameters=best.count_params(),
        stopped_by=_stopped_by(history, config, plan),
        **(plan.summary() if plan else {"time_budget_minutes": None}),
    )
    _write_tables(
        model_dir,
        {**config.to_dict(), "digest": config.digest(), "source": source},
        metrics,
        history=history,
        per_frame=per_frame,
        papers=papers,
    )
    if plan:
        log.info(
            "time budget %g min: %d of at most %d epochs (%s), about %.0fs each after %.0fs of tracing",
            config.time_budget,
            len(history),
            config.epochs,
            metrics["stopped_by"],
            plan.epoch_s,
            plan.trace_s,
        )
    log.info(
        "rollout MSE %.5f (blank %.5f, copy last %.5f, context mean %.5f); %d of %d targets met; trained in %.0fs",
        metrics["rollout_mse"],
        metrics["rollout_blank_mse"],
        metrics["rollout_copy_last_mse"],
        metrics["rollout_mean_frame_mse"],
        metrics["targets_met"],
        metrics["targets"],
        train_seconds,
    )

    shown = slice(0, min(config.examples, n_test))
    write_report(
        run_dir,
        name,
        config,
        source,
        (n_train, n_val, n_test),
        history,
        per_frame,
        summary,
        papers,
        goals,
        metrics,
        test_set[shown],
        scores["one_step"][shown],
        scores["rolled"][shown],
    )
    headline = (
        "rollout_mse",
        "rollout_blank_mse",
        "rollout_copy_last_mse",
        "rollout_ssim_64",
        "intensity_ratio_last_frame",
        "sharpness_last_frame",
        "train_seconds",
    )
    write_run_summary(
        run_dir,
        kind="convlstm",
        dataset=f"Moving MNIST ({data_name(config)}), {config.sequences} sequences",
        source=source,
        model=f"ConvLSTM {config.filters} filters, {config.frame_size}px, 10 -> 10",
        metrics={k: metrics[k] for k in headline},
        config=config.to_dict(),
    )
    return metrics


def _stopped_by(history: pd.DataFrame, config: ConvLSTMConfig, plan) -> str:
    """Why training ended: `time budget`, `early stopping` or `all epochs`."""
    if plan and plan.stopped:
        return "time budget"
    return "all epochs" if len(history) >= config.epochs else "early stopping"


def _write_tables(model_dir: Path, config: dict, metrics: dict, **tables: pd.DataFrame) -> None:
    """`model/`'s machine-readable results: config.json, metrics.json and one CSV per table."""
    atomic.write_text(model_dir / "config.json", json.dumps(config, indent=1))
    atomic.write_text(model_dir / "metrics.json", json.dumps(metrics, indent=1))
    for name, table in tables.items():
        atomic.write_csv(model_dir / f"{name}.csv", table, index=False)


def _metrics(
    summary: pd.DataFrame, papers: pd.DataFrame, per_frame: pd.DataFrame, goals: pd.DataFrame, intensity_ratio: float
) -> dict:
    """metrics.json's scores: each task's means, the rollout in the papers' metrics, the last frame's visibility, the
    targets."""
    by_task = summary.set_index("task")
    metrics = {
        f"{task.replace('-', '_')}_{name}": float(by_task.loc[task, name])
        for task in by_task.index
        for name in ("mse", "bce", "ssim", "copy_last_mse", "blank_mse", "mean_frame_mse", "sharpness", "ink_kept")
    }
    metrics.update(
        {
            f"rollout_{name}_64": float(papers.iloc[0][name])
            for name in ("mse_per_frame", "ssim", "cross_entropy_per_sequence")
        }
    )
    last = per_frame[per_frame["task"] == "rollout"].iloc[-1]
    metrics.update(
        sharpness_last_frame=round(float(last["sharpness"]), 4),
        ink_kept_last_frame=round(float(last["ink_kept"]), 4),
        intensity_ratio_last_frame=round(intensity_ratio, 4),
        targets_met=int(goals["met"].sum()),
        targets=len(goals),
    )
    return metrics
