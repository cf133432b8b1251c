"""Stage two's input: fixed-length frame-feature sequences from the HDF5 store, and their splits.

Every video becomes T steps of its stored frame features. Policy `pad` keeps a short video's frames
and pads the rest with zeros marked False in a mask (a longer video is thinned evenly to T);
policy `resample` always picks T evenly spaced frames (repeating frames of short videos), so the
mask is all True. `SequenceSource` reads those sequences either from the HDF5 file on demand
(streamed: a store larger than memory trains) or from an array built once; both paths run the
same per-video code, so they give identical arrays, and `make_dataset` feeds either to Keras in the
same shuffled order.

Splits come from the manifest's `split` column; where it is empty, a stratified, group-aware split
with a fixed seed is drawn (clips of one `group` never straddle two splits), and a validation split
is carved from train the same way when the manifest names none.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import h5py
import numpy as np
import pandas as pd

from pipeline import store
from pipeline.core.config import Config
from pipeline.core.errors import InputError

log = logging.getLogger(__name__)

POLICIES = ("pad", "resample")
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class SequenceConfig(Config):
    """How a video becomes T steps; recorded in the run so `predict` builds the same sequences."""

    seq_len: int
    policy: str = "pad"

    def __post_init__(self):
        if self.policy not in POLICIES:
            raise InputError(f"sequence policy {self.policy!r} is not one of {', '.join(POLICIES)}")
        if self.seq_len < 1:
            raise InputError(f"sequence length {self.seq_len} must be at least 1")


def load_videos(store_path) -> pd.DataFrame:
    """The store's video table, checked for what training needs: in sync with its manifest, two classes."""
    store.require_in_sync(store_path)
    videos = store.read_videos(store_path)
    empty = videos["length"] < 1
    if empty.any():
        log.warning(
            "%d videos have no stored frames and are left out: %s",
            empty.sum(),
            ", ".join(videos.loc[empty, "video_id"][:5]),
        )
        videos = videos[~empty].reset_index(drop=True)
    if videos.empty:
        raise InputError(
            f"the feature store {store_path} holds no videos; run `python -m pipeline features` on a manifest first "
            f"(failed videos: {len(store.read_failures(store_path))})"
        )
    labels = videos["label"].unique()
    if len(labels) < 2:
        raise InputError(
            f"the feature store {store_path} holds only one class ({labels[0]!r}); a classifier needs at least two"
        )
    return videos


def sequence_config(videos: pd.DataFrame, seq_len: int | None, policy: str) -> SequenceConfig:
    """The sequence config for these videos: T defaults to the median stored length.

    A T longer than every video would make every sequence mostly padding (or repeated frames), so
    it is refused.
    """
    longest = int(videos["length"].max())
    if seq_len is None:
        seq_len = int(np.median(videos["length"]))
    if seq_len > longest:
        raise InputError(
            f"--seq-len {seq_len} is larger than the longest video in the store ({longest} frames); "
            f"use --seq-len {longest} or less, or extract more frames per video (--sampling)"
        )
    return SequenceConfig(seq_len, policy)


def frame_positions(length: int, config: SequenceConfig) -> np.ndarray:
    """Which of a video's `length` stored rows fill its T steps; -1 marks a padded step."""
    if config.policy == "resample" or length > config.seq_len:
        return np.round(np.linspace(0, length - 1, config.seq_len)).astype(np.int64)
    return np.concatenate([np.arange(length), np.full(config.seq_len - length, -1)]).astype(np.int64)


def fixed_length(frames: np.ndarray, config: SequenceConfig) -> tuple[np.ndarray, np.ndarray]:
    """One video's T steps from its frame features (n, D): features (T, D) float32 and mask (T,).

    Training (`SequenceSource`) and `predict` both build sequences here, so a model sees a new
    video exactly as it saw the training videos.
    """
    positions = frame_positions(len(frames), config)
    valid = positions >= 0
    x = np.zeros((config.seq_len, frames.shape[1]), np.float32)
    x[valid] = frames[positions[valid]]
    return x, valid


class SequenceSource:
    """Fixed-length sequences of a store's videos: `read(rows)` gives features (n, T, D) and mask (n, T).

    `rows` index the `videos` table. With `in_memory`, every sequence is read once at construction;
    otherwise each call reads its videos from the HDF5 file, so memory use stays at one batch.
    """

    def __init__(self, store_path, videos: pd.DataFrame, config: SequenceConfig, in_memory: bool):
        self.store_path, self.config, self.in_memory = str(store_path), config, in_memory
        self.offsets = videos["offset"].to_numpy(np.int64)
        self.lengths = videos["length"].to_numpy(np.int64)
        with h5py.File(self.store_path, "r") as handle:
            self.dim = int(handle["features"].shape[1])
        self._handle = None
        self._memory = self._read_store(np.arange(len(videos))) if in_memory else None

    def __len__(self) -> int:
        return len(self.offsets)

    def read(self, rows) -> tuple[np.ndarray, np.ndarray]:
        rows = np.asarray(rows, np.int64)
        if self._memory is not None:
            return self._memory[0][rows], self._memory[1][rows]
        return self._read_store(rows)

    def batches(self, rows, batch_size: int):
        """(rows, features, mask) for consecutive batches of `rows`, in order."""
        rows = np.asarray(rows, np.int64)
        for start in range(0, len(rows), batch_size):
            part = rows[start : start + batch_size]
            yield (part, *self.read(part))

    def frame_times(self, rows) -> list[str]:
        """For each of `rows`, the times (seconds, space-separated) of the stored frames its sequence
        holds: what a model saw of the video, which the report shows as a thumbnail strip."""
        if self._handle is None:
            self._handle = h5py.File(self.store_path, "r")
        times = []
        for row in np.asarray(rows, np.int64):
            start, positions = self.offsets[row], frame_positions(int(self.lengths[row]), self.config)
            stamps = self._handle["timestamps"][start : start + self.lengths[row]][np.unique(positions[positions >= 0])]
            times.append(" ".join(f"{stamp:.3f}" for stamp in stamps))
        return times

    @property
    def nbytes(self) -> int:
        """Memory that all sequences take when held as float32 arrays."""
        return len(self) * self.config.seq_len * self.dim * 4

    def _read_store(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._handle is None:
            self._handle = h5py.File(self.store_path, "r")
        features = self._handle["features"]
        x = np.zeros((len(rows), self.config.seq_len, self.dim), np.float32)
        mask = np.zeros((len(rows), self.config.seq_len), bool)
        for i, row in enumerate(rows):
            start = self.offsets[row]
            x[i], mask[i] = fixed_length(features[start : start + self.lengths[row]], self.config)
        return x, mask


def make_dataset(source: SequenceSource, rows, labels: np.ndarray, batch_size: int, shuffle_seed: int | None = None):
    """A tf.data pipeline of ({"frames", "mask"}, label) batches over `rows`.

    Only video indices are shuffled (with `shuffle_seed`, reshuffled each epoch); the sequences are
    read per batch by `source`, in memory or from HDF5, and prefetched so reading overlaps training.
    """
    import tensorflow as tf

    rows = np.asarray(rows, np.int64)
    labels = np.asarray(labels, np.int32)

    def read(batch_rows):
        x, mask = source.read(batch_rows)
        return x, mask, labels[batch_rows]

    def load(batch_rows):
        x, mask, y = tf.numpy_function(read, [batch_rows], (tf.float32, tf.bool, tf.int32), stateful=False)
        x.set_shape((None, source.config.seq_len, source.dim))
        mask.set_shape((None, source.config.seq_len))
        y.set_shape((None,))
        return {"frames": x, "mask": mask}, y

    dataset = tf.data.Dataset.from_tensor_slices(rows)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(max(1, len(rows)), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).map(load).prefetch(tf.data.AUTOTUNE)


def feature_stats(source: SequenceSource, rows, batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature over the valid frames of `rows` (the training split).

    Features (nearly) constant in training get a floor on their deviation, so a tiny difference at
    test time is not blown up into a huge standardized value.
    """
    total, squares, count = _sums(x[mask] for _, x, mask in source.batches(rows, batch_size))
    if count == 0:
        raise InputError("the training split has no frames to compute feature statistics from")
    mean = total / count
    return mean.astype(np.float32), _floored(np.sqrt(np.maximum(squares / count - mean**2, 0.0)))


def delta_scale(source: SequenceSource, rows, batch_size: int = 256) -> np.ndarray:
    """Root mean square per feature of the frame-to-frame differences of `rows` (valid step pairs only).

    Delta inputs are divided by it (not centred, so a zero delta stays zero); floored like
    `feature_stats` for features that never change in training.
    """
    _, squares, count = _sums(
        (x[:, 1:] - x[:, :-1])[mask[:, 1:] & mask[:, :-1]] for _, x, mask in source.batches(rows, batch_size)
    )
    if count == 0:
        raise InputError(
            "the training split has no pair of consecutive frames to compute delta statistics from; use "
            "--inputs features"
        )
    return _floored(np.sqrt(squares / count))


def assign_splits(videos: pd.DataFrame, seed: int = 0, test_size: float = 0.15, val_size: float = 0.15) -> pd.Series:
    """Each video's split (train / val / test), indexed like `videos`.

    The manifest's `split` column wins when every video has one; when none has, `test_size` of the
    videos are held out for test, group-aware and stratified by label; either way, when no video is
    in `val`, `val_size` of the training videos are carved out the same way. A mix of rows with and
    without a split is refused, since there is no way to tell what the empty ones meant.
    """
    given = videos["split"].fillna("").astype(str).str.strip().str.lower()
    unknown = sorted(set(given) - {"", *SPLITS})
    if unknown:
        raise InputError(f"unknown split names in the store: {', '.join(unknown)} (expected {', '.join(SPLITS)})")
    groups = group_ids(videos)
    if (given == "").all():
        split = pd.Series("train", index=videos.index)
        split[_holdout(videos.index, videos["label"], groups, test_size, seed)] = "test"
    elif (given == "").any():
        raise InputError(
            f"{(given == '').sum()} of {len(given)} videos have no split while the others do; "
            f"give every manifest row a split (train/val/test) or none"
        )
    else:
        split = given.copy()
        _warn_straddling(split, groups)
    if not (split == "val").any():
        train = split.index[split == "train"]
        split[_holdout(train, videos.loc[train, "label"], groups[train], val_size, seed)] = "val"
    return split


def group_ids(videos: pd.DataFrame) -> pd.Series:
    """A video's group: its manifest `group`, or the video itself when it has none."""
    group = videos["group"].fillna("").astype(str)
    return group.where(group != "", "video:" + videos["video_id"].astype(str))


# --- helpers ---------------------------------------------------------------------------------


def _sums(batches) -> tuple[np.ndarray, np.ndarray, int]:
    """Sum, sum of squares (float64, per feature) and row count of (n, D) arrays."""
    total = squares = 0.0
    count = 0
    for rows in batches:
        rows = rows.astype(np.float64)
        total, squares, count = total + rows.sum(0), squares + (rows**2).sum(0), count + len(rows)
    return np.asarray(total), np.asarray(squares), count


def _floored(deviation: np.ndarray) -> np.ndarray:
    """A deviation per feature with a floor of 1e-3 of the largest, so (nearly) constant features are not blown up."""
    floor = 1e-3 * deviation.max() if deviation.max() > 0 else 1.0
    return np.maximum(deviation, floor).astype(np.float32)


def _holdout(index: pd.Index, labels: pd.Series, groups: pd.Series, fraction: float, seed: int) -> pd.Index:
    """About `fraction` of `index`, whole groups only, stratified by label (one StratifiedGroupKFold fold)."""
    from sklearn.model_selection import StratifiedGroupKFold

    if fraction <= 0:
        return index[:0]
    # sklearn needs at least as many groups, and as many videos in the largest class, as folds
    folds = min(round(1 / fraction), groups.nunique(), labels.value_counts().max())
    if folds < 2:
        log.warning("too few videos or groups (%d) to hold out a split; nothing is held out", groups.nunique())
        return index[:0]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # "least populated class has only N members": handled and reported downstream
        warnings.simplefilter("ignore", UserWarning)
        _, held = next(splitter.split(np.zeros(len(index)), labels.to_numpy(), groups.to_numpy()))
    return index[held]


def _warn_straddling(split: pd.Series, groups: pd.Series) -> None:
    spread = split.groupby(groups).nunique()
    if (spread > 1).any():
        log.warning(
            "the manifest's splits put %d group(s) in more than one split (e.g. %s): clips of one source "
            "in train and test inflate test accuracy",
            (spread > 1).sum(),
            spread[spread > 1].index[0],
        )
