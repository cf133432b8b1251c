"""Stage two: train classifiers on a feature store and write the run directory.

    reports/<run>/model/
        <model>.keras | <model>.npz      the best checkpoint of each model trained (no pickles: see model_files)
        labels.json                      class names, in output order
        config.json                      store, its feature config, sequence and training settings
        splits.csv                       every video's split (video_id, label, group, split)
        history.csv                      per model and epoch: loss, accuracy, val_*, seconds
        predictions.csv                  per model and test video: true, predicted, probabilities, frame times
        metrics.json                     per model: test accuracy, macro-F1, top-k (95% intervals), per class
        tensorboard/<model>/             TensorBoard logs of each sequence model (train/, validation/)
    reports/<run>/index.html, report.md  the report (`report.write_classification_report`)

The run is written into a temporary sibling that replaces an earlier run only when it is complete
(`folders.staged_run`), and only a run directory the tool made is ever replaced.

Sequence models train with Adam on batches streamed from the store or held in memory, stop early
on the validation loss and keep their best epoch; baselines are fitted on the same training split
and everything is evaluated on the same test split. Seeds are fixed, so a rerun repeats a run.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import store
from pipeline.classify.config import TrainConfig, check_batch_memory
from pipeline.classify.fine_tune import load_initial, with_loaded_network
from pipeline.classify.metrics import add_comparisons, classification_metrics, validation_metrics
from pipeline.classify.model_files import load_model, save_baseline
from pipeline.classify.models import (
    build_baseline,
    build_sequence_model,
    grid_cells,
    n_classes,
    probabilities,
)
from pipeline.classify.progress import EpochProgress, score_text, tensorboard_logs
from pipeline.classify.sequences import (
    SequenceSource,
    delta_scale,
    feature_stats,
    load_videos,
    make_dataset,
    sequence_config,
)
from pipeline.classify.splits import assign_splits
from pipeline.core import atomic
from pipeline.core.device import log_tensorflow_device
from pipeline.core.errors import InputError
from pipeline.report.classification import write_classification_report
from pipeline.report.index import write_index
from pipeline.runs import folders
from pipeline.runs.layout import ALL_MODELS, SEQUENCE_MODELS
from pipeline.runs.verdict import noise_notes

log = logging.getLogger(__name__)

LR_FACTOR = 0.3  # a learning-rate drop (`lr_patience`) multiplies it by this
MEMORY_SHARE = 0.25  # `auto` holds the sequences in memory when they take at most this share of free RAM


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict  # model name -> metrics (see metrics.classification_metrics)
    report: Path


def default_run_dir(store_path, models: tuple[str, ...], reports_root="reports") -> Path:
    """reports/<dataset>-<models>, the dataset being the store's folder (its manifest's name)."""
    names = "all" if set(models) == set(ALL_MODELS) else "-".join(models)
    return Path(reports_root) / f"{Path(store_path).parent.name}-{names}"


def train(
    store_path, run_dir, config: TrainConfig = TrainConfig(), overwrite: bool = False, progress: bool = True
) -> TrainResult:
    """Train `config.models` on the store, evaluate them on its test split, write the run and its report.

    Every input is checked before the run directory is touched, so a refused run leaves nothing
    behind: an empty store, one class, a T longer than every video, an existing run directory
    (unless `overwrite`, and only a run the tool made), a model to fine-tune whose feature
    dimension or classes do not match. The run replaces an earlier one only once it is complete.
    """
    store_path, run_dir = (
        Path(store_path),
        Path(os.path.abspath(run_dir)),
    )  # `--run .`: the folder by its name, symlinks kept
    data = _load_data(store_path, config)
    check_batch_memory(config, data.source.config.seq_len, data.source.dim)
    initial = load_initial(config.init, data.source.dim, data.labels, config.network.inputs) if config.init else None
    if initial is not None:
        config = with_loaded_network(config, initial)
    folders.check_replaceable(run_dir, overwrite)
    log_tensorflow_device()
    if _in_memory(config.data, data.source):
        data.source = SequenceSource(store_path, data.videos, data.source.config, in_memory=True)
    with folders.staged_run(run_dir, overwrite) as staging:
        metrics = _train_into(staging, store_path, data, config, initial, progress)
        write_classification_report(staging, name=run_dir.name, index=False)
    write_index(run_dir.parent)
    return TrainResult(run_dir, metrics, run_dir / "index.html")


def _train_into(run_dir: Path, store_path: Path, data: _Data, config: TrainConfig, initial, progress: bool) -> dict:
    """Fit, evaluate and record every model of the run in `run_dir`/model; return the metrics."""
    model_dir = run_dir / "model"
    model_dir.mkdir()
    _write_setup(model_dir, store_path, data, config)

    mean, std = feature_stats(data.source, data.rows["train"])
    deltas = delta_scale(data.source, data.rows["train"]) if "deltas" in config.network.inputs else None
    histories, predictions, metrics = [], [], {}
    for name in config.models:
        started = time.perf_counter()
        if name in SEQUENCE_MODELS:
            model, history = _fit_sequence_model(name, data, (mean, std, deltas), config, model_dir, initial, progress)
        else:
            model, history = _fit_baseline(name, data, config, model_dir), pd.DataFrame(columns=["seconds"])
        seconds = time.perf_counter() - started
        test = batched_probabilities(model, data.source, data.rows["test"], config.batch_size)
        metrics[name] = {
            "kind": "sequence" if name in SEQUENCE_MODELS else "order-blind",
            **classification_metrics(data.y[data.rows["test"]], test, data.labels),
            **validation_metrics(
                data.y[data.rows["val"]], batched_probabilities(model, data.source, data.rows["val"], config.batch_size)
            ),
            "epochs": len(history),
            "seconds": round(seconds, 2),
            "seconds_per_epoch": round(float(history["seconds"].mean()), 3) if len(history) else None,
        }
        histories.append(history.assign(model=name))
        predictions.append(_prediction_table(name, data, test))
        log.info(
            "%s: test accuracy %s, macro-F1 %s (%d test videos, %.1fs)",
            name,
            score_text(metrics[name]["accuracy"]),
            score_text(metrics[name]["macro_f1"]),
            len(data.rows["test"]),
            seconds,
        )

    add_comparisons(metrics, pd.concat(predictions))
    for note in noise_notes(metrics):  # the split too small to tell the models apart, in one sentence each
        log.warning("%s", note)
    history_columns = ["model", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "seconds"]
    history_table = pd.concat([pd.DataFrame(columns=history_columns), *histories])[history_columns]
    atomic.write_csv(model_dir / "history.csv", history_table, index=False)
    atomic.write_csv(model_dir / "predictions.csv", pd.concat(predictions), index=False)
    atomic.write_text(model_dir / "metrics.json", json.dumps(metrics, indent=1))
    return metrics


def batched_probabilities(model, source: SequenceSource, rows, batch_size: int = 256) -> np.ndarray:
    """Class probabilities (len(rows), C) of a Keras sequence model or a baseline, read and run batch by batch
    (a split of a store larger than memory is never held whole)."""
    parts = [probabilities(model, x, mask) for _, x, mask in source.batches(rows, batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, n_classes(model)))


# --- helpers ---------------------------------------------------------------------------------


@dataclass
class _Data:
    """The store's videos as a run sees them: sequences, splits, class indices."""

    source: SequenceSource
    videos: pd.DataFrame  # the store's video table with the run's `split` column
    labels: list[str]
    y: np.ndarray  # class index per video
    rows: dict  # split name -> positions in `videos`
    attrs: dict  # the store's attributes (feature config, fallback note...), read once

    @property
    def cells(self) -> int:
        """Grid cells per frame's features (the store's pooling), for `--cell-units`."""
        return grid_cells(self.attrs.get("feature_config", {}).get("pooling", "avg"))


def _load_data(store_path: Path, config: TrainConfig) -> _Data:
    """Read and check the store's videos, build the sequence config and the splits."""
    if not store_path.is_file():
        raise FileNotFoundError(f"no feature store at {store_path}; run `python -m pipeline features` first")
    videos = load_videos(store_path)
    labels = sorted(videos["label"].unique())
    sequences = sequence_config(videos, config.seq_len, config.policy)
    videos = videos.assign(split=assign_splits(videos, config.seed, config.test_size, config.val_size))
    rows = {name: np.flatnonzero(videos["split"].to_numpy() == name) for name in ("train", "val", "test")}
    trained = videos["label"].iloc[rows["train"]].unique()
    if len(trained) < 2:
        raise InputError(
            f"the training split holds {'only ' + repr(trained[0]) if len(trained) else 'no videos'}; a classifier "
            f"needs at least two classes to train on (check the manifest's split column)"
        )
    for split, positions in rows.items():
        missing = sorted(set(labels) - set(videos["label"].iloc[positions]))
        if missing:
            log.warning("%s split has no videos of %d class(es): %s", split, len(missing), ", ".join(missing[:10]))
    y = videos["label"].map({label: index for index, label in enumerate(labels)}).to_numpy(np.int32)
    return _Data(
        SequenceSource(store_path, videos, sequences, in_memory=False),
        videos,
        labels,
        y,
        rows,
        store.read_attrs(store_path),
    )


def _write_setup(model_dir: Path, store_path: Path, data: _Data, config: TrainConfig) -> None:
    """labels.json, splits.csv and config.json: written before training, so even a crashed run says what it was."""
    attrs = data.attrs
    atomic.write_text(model_dir / "labels.json", json.dumps(data.labels, indent=1))
    atomic.write_csv(model_dir / "splits.csv", data.videos[["video_id", "label", "group", "split"]], index=False)
    atomic.write_text(
        model_dir / "config.json",
        json.dumps(
            {
                "store": str(store_path.resolve()),
                "dataset": store_path.parent.name,
                "feature_config": attrs.get("feature_config", {}),
                "fallback": attrs.get("fallback", ""),
                "feature_dim": data.source.dim,
                "sequence": data.source.config.to_dict(),
                "train": config.to_dict(),
                "data": "memory" if data.source.in_memory else "stream",
                "failures": store.read_failures(store_path).drop(columns=["key"]).to_dict("records"),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            indent=1,
            default=str,
        ),
    )


def _fit_sequence_model(name, data: _Data, stats, config: TrainConfig, model_dir: Path, initial, progress: bool):
    """Fit one LSTM / GRU; return the best checkpoint (reloaded from disk) and its history table.

    `stats` are the training split's feature mean and deviation and delta scale (see `build_sequence_model`).
    """
    import keras

    keras.utils.set_random_seed(config.seed)
    mean, std, deltas = stats
    model = initial or build_sequence_model(
        name, data.source.dim, len(data.labels), mean, std, config.network, deltas, data.cells
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    train_rows, val_rows = data.rows["train"], data.rows["val"]
    monitor = "val_loss" if len(val_rows) else "loss"
    if monitor == "loss":
        log.warning(
            "%s: the validation split is empty, so early stopping and the best checkpoint follow the training loss",
            name,
        )
    checkpoint = model_dir / f"{name}.keras"
    timer = EpochProgress(name, config.epochs, math.ceil(len(train_rows) / config.batch_size), progress)
    model.fit(
        make_dataset(data.source, train_rows, data.y, config.batch_size, shuffle_seed=config.seed),
        validation_data=make_dataset(data.source, val_rows, data.y, config.batch_size) if len(val_rows) else None,
        epochs=config.epochs,
        class_weight=_class_weights(data.y[train_rows]) if config.class_weights else None,
        callbacks=[
            keras.callbacks.EarlyStopping(monitor=monitor, patience=config.patience),
            keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor, save_best_only=True),
            timer.callback(),
            *_lr_schedule(monitor, config.lr_patience),
            *tensorboard_logs(model_dir, name),
        ],
        shuffle=False,  # the dataset shuffles itself, with the run's seed
        verbose=0,
    )
    history = pd.DataFrame(model.history.history).assign(epoch=lambda frame: frame.index + 1, seconds=timer.seconds)
    return load_model(checkpoint), history


def _fit_baseline(name, data: _Data, config: TrainConfig, model_dir: Path):
    """Fit an order-blind baseline on the training sequences (held in memory) and save it as arrays."""
    rows = data.rows["train"]
    x, mask = data.source.read(rows)
    model = build_baseline(name, len(data.labels), "balanced" if config.class_weights else None, config.seed).fit(
        x, mask, data.y[rows]
    )
    save_baseline(model, model_dir / f"{name}.npz")
    return model


def _lr_schedule(monitor: str, patience: int) -> list:
    """A drop of the learning rate after `patience` epochs without improvement, or nothing (constant) for 0."""
    import keras

    return (
        [keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=LR_FACTOR, patience=patience, min_lr=1e-5)]
        if patience > 0
        else []
    )


def _in_memory(mode: str, source: SequenceSource) -> bool:
    if mode != "auto":
        return mode == "memory"
    import psutil

    return source.nbytes <= MEMORY_SHARE * psutil.virtual_memory().available


def _class_weights(y: np.ndarray) -> dict:
    """Balanced weights (n / (classes * count)) for the classes present in training."""
    from sklearn.utils.class_weight import compute_class_weight

    present = np.unique(y)
    return dict(zip(present.tolist(), compute_class_weight("balanced", classes=present, y=y).tolist()))


def _prediction_table(name: str, data: _Data, scores: np.ndarray) -> pd.DataFrame:
    """predictions.csv rows of one model: video, true and predicted label, confidence, p_<class>... (`scores`: test
    probabilities)"""
    test = data.videos.iloc[data.rows["test"]]
    labels = np.asarray(data.labels, dtype=object)
    table = pd.DataFrame(
        {
            "model": name,
            "video_id": test["video_id"].to_numpy(),
            "path": test["path"].to_numpy(),
            "true": labels[data.y[data.rows["test"]]],
            "predicted": labels[scores.argmax(1)] if len(scores) else [],
            "confidence": scores.max(1) if len(scores) else [],
            "frame_times": data.source.frame_times(data.rows["test"]),  # the frames the model saw, for the report
        }
    )
    return pd.concat([table, pd.DataFrame(scores, columns=[f"p_{label}" for label in data.labels])], axis=1)
