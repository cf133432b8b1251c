"""Stage two's input: fixed-length frame-feature sequences from the HDF5 store, and their splits.

Every video becomes T steps of its stored frame features. Policy `pad` keeps a short video's frames
and pads the rest with zeros marked False in a mask (a longer video is thinned evenly to T);
policy `resample` always picks T evenly spaced frames (repeating frames of short videos), so the
mask is all True. `SequenceSource` reads those sequences either from the HDF5 file on demand
(streamed: a store larger than memory trains) or from an array built once; both paths run the
same per-video code, so they give identical arrays, and `make_dataset` feeds either to Keras in the
same shuffled order.

The splits live in `splits` (assign_splits, group_ids).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import ClassVar

import h5py
import numpy as np
import pandas as pd

from pipeline import store
from pipeline.core.config import Bound, Config, check_bounds
from pipeline.core.errors import InputError
from pipeline.store.tables import read_table

log = logging.getLogger(__name__)

POLICIES = ("pad", "resample")
SEQ_LEN = Bound(1, 10_000, unit="steps", why="stage one stores at most 10,000 frames per video")


@dataclass(frozen=True)
class SequenceConfig(Config):
    """How a video becomes T steps; recorded in the run so `predict` builds the same sequences."""

    seq_len: int
    policy: str = "pad"
    BOUNDS: ClassVar[dict] = {"seq_len": SEQ_LEN}

    def __post_init__(self):
        check_bounds(self)
        if self.policy not in POLICIES:
            raise InputError(f"sequence policy {self.policy!r} is not one of {', '.join(POLICIES)}")


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

    While it reads, the source is registered as a reader of the store (`store.ReaderLock`, taken
    before the index is opened), so a concurrent merge or compaction keeps the segment files its
    handle reads (they are deleted after `close()`). Each video's frames are located by its key in
    the very index the handle opened, so a merge between reading `videos` and opening the store
    cannot shift them onto another video's frames.
    """

    def __init__(self, store_path, videos: pd.DataFrame, config: SequenceConfig, in_memory: bool):
        self.store_path, self.config, self.in_memory = str(store_path), config, in_memory
        self._reader = store.ReaderLock(self.store_path)
        self._handle, self._memory = h5py.File(self.store_path, "r"), None
        try:
            self.offsets, self.lengths = _located(self._handle, videos, self.store_path)
            self.dim = int(self._handle["features"].shape[1])
            if in_memory:
                self._memory = self._read_store(np.arange(len(videos)))
        except BaseException:
            self.close()
            raise
        if in_memory:
            self.close()

    def close(self) -> None:
        """Close the store and end the reader registration (reading again reopens neither: in memory only)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        self._reader.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

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
            raise store.StoreError(f"the sequence source of {self.store_path} was closed; make a new one")
        features = self._handle["features"]
        x = np.zeros((len(rows), self.config.seq_len, self.dim), np.float32)
        mask = np.zeros((len(rows), self.config.seq_len), bool)
        for i, row in enumerate(rows):
            start = self.offsets[row]
            try:
                frames = features[start : start + self.lengths[row]]
            except OSError as error:  # a segment damaged since the store was checked: h5py names no file
                raise store.StoreError(
                    f"the frames of the feature store {self.store_path} cannot be read ({error}); "
                    f"`python -m pipeline inspect {self.store_path}` names the damaged segment file and the recovery"
                ) from None
            x[i], mask[i] = fixed_length(frames, self.config)
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


# --- helpers ---------------------------------------------------------------------------------


def _located(handle: h5py.File, videos: pd.DataFrame, store_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Each video's frame offset and length in the index `handle` opened, found by its key (rows without a key
    column are taken as given)."""
    if "key" not in videos:
        return videos["offset"].to_numpy(np.int64), videos["length"].to_numpy(np.int64)
    columns = ("key", "offset", "length")
    table = pd.concat(
        [read_table(handle, name, columns) for name in ("videos", "retired")], ignore_index=True
    ).drop_duplicates("key")
    found = videos[["key"]].merge(table, on="key", how="left")
    if found["offset"].isna().any():
        gone = videos.loc[found["offset"].isna().to_numpy(), "video_id"]
        raise store.StoreError(
            f"{len(gone)} videos (e.g. {gone.iloc[0]}) left the feature store {store_path} while it was being opened "
            f"(another run synced it with a changed manifest); run again"
        )
    return found["offset"].to_numpy(np.int64), found["length"].to_numpy(np.int64)


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
