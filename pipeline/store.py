"""The HDF5 feature store: the contract between stage one (features) and stage two (train).

Layout (all plain HDF5, readable with h5py alone):

    /              attrs: schema_version, feature_config (JSON), config_hash, versions (JSON)
    /videos/<col>  one entry per video: video_id, key, path, label, split, group (strings);
                   total_frames, width, height, offset, length (ints); fps (float).
                   Rows offset .. offset+length of the frame datasets belong to that video.
    /features      (frames, D) float16 by default, chunked on axis 0, resizable
    /frame_index   (frames,) source frame number of each row
    /timestamps    (frames,) seconds
    /failures/<col> one entry per failed video: video_id, key, path, stage, error, message

Crash safety: a run never writes the store in place. Finished videos go to shard files in
`<store>.parts/`, each written under a temporary name and renamed when complete. At the end of a
run, under a lock, the store is copied, the shards appended to the copy in manifest order, the copy
renamed over the store, and only then the shards deleted. A run killed at any moment leaves the old
store intact plus complete shards; the next run counts those shards as done and merges them, so it
ends with the same store as an unbroken run.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from filelock import FileLock

SCHEMA_VERSION = 1
VIDEO_TEXT = ("video_id", "key", "path", "label", "split", "group")
VIDEO_INTS = ("total_frames", "width", "height", "offset", "length")
VIDEO_FLOATS = ("fps",)
FAILURE_COLUMNS = ("video_id", "key", "path", "stage", "error", "message")
TEXT = h5py.string_dtype()
APPEND_ROWS = 8192  # frames buffered per write while merging: bounds memory on large merges


@dataclass
class VideoRow:
    """One video of the manifest, as stage one sees it."""

    video_id: str
    key: str
    path: str
    label: str
    split: str = ""
    group: str = ""
    order: int = 0  # position in the manifest: merged stores keep manifest order


def video_key(path: str | Path) -> str:
    """Identity of a video file: resolved path, size and modification time (changes when it does)."""
    path = Path(path).resolve()
    try:
        stat = path.stat()
    except OSError:
        return f"{path}|missing"
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


@dataclass
class Shard:
    """Videos finished in memory, waiting to be written as one shard file."""

    videos: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    frame_index: list[np.ndarray] = field(default_factory=list)
    timestamps: list[np.ndarray] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def add_video(self, row: VideoRow, features: np.ndarray, frame_index: np.ndarray, timestamps: np.ndarray, total_frames: int, fps: float, width: int, height: int) -> None:
        self.videos.append({**_row_fields(row), "order": row.order, "total_frames": total_frames, "fps": fps, "width": width, "height": height, "length": len(features)})
        self.features.append(features)
        self.frame_index.append(frame_index)
        self.timestamps.append(timestamps)

    def add_failure(self, row: VideoRow, stage: str, error: str, message: str) -> None:
        self.failures.append({"video_id": row.video_id, "key": row.key, "path": row.path, "stage": stage, "error": error, "message": message, "order": row.order})

    def __len__(self) -> int:
        return len(self.videos) + len(self.failures)


def parts_dir(store_path: str | Path) -> Path:
    return Path(f"{store_path}.parts")


def write_shard(store_path: str | Path, shard: Shard, dim: int, dtype: str) -> Path:
    """Write a shard file next to the store: under a temporary name, renamed once complete."""
    folder = parts_dir(store_path)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"shard-{uuid.uuid4().hex}.h5"
    temporary = final.with_suffix(".h5.tmp")
    videos = pd.DataFrame(shard.videos, columns=[*VIDEO_TEXT, "order", *VIDEO_INTS[:3], "fps", "length"])
    videos["offset"] = np.concatenate([[0], np.cumsum(videos["length"].to_numpy())[:-1]]).astype(np.int64) if len(videos) else []
    with h5py.File(temporary, "w") as out:
        _create_frame_datasets(out, dim, dtype)
        _append_frames(out, _concat(shard.features, (0, dim)), _concat(shard.frame_index, (0,)), _concat(shard.timestamps, (0,)))
        _write_table(out, "videos", videos)
        _write_table(out, "failures", pd.DataFrame(shard.failures, columns=[*FAILURE_COLUMNS, "order"]))
    os.replace(temporary, final)
    return final


def shard_keys(store_path: str | Path) -> tuple[set[str], set[str]]:
    """Keys of videos (done, failed) held in complete shards that are not merged yet."""
    done, failed = set(), set()
    for shard in sorted(parts_dir(store_path).glob("*.h5")):
        with h5py.File(shard, "r") as handle:
            done.update(_read_text(handle, "videos", "key"))
            failed.update(_read_text(handle, "failures", "key"))
    return done, failed


def merge_shards(store_path: str | Path, attrs: dict) -> int:
    """Fold every complete shard into the store atomically; return the number of new videos.

    `attrs` (feature config, versions...) are written when the store is created. Videos whose key
    the store already holds are skipped, so merging twice changes nothing.
    """
    store_path = Path(store_path)
    folder = parts_dir(store_path)
    with FileLock(f"{store_path}.lock"):
        for stale in folder.glob("*.tmp"):  # left by a killed writer: incomplete by construction
            stale.unlink()
        shards = sorted(folder.glob("*.h5"))
        if not shards:
            return 0
        temporary = store_path.with_name(store_path.name + ".merge.tmp")
        if store_path.exists():
            shutil.copyfile(store_path, temporary)
        else:
            _create_store(temporary, attrs, _shard_dim_dtype(shards[0]))
        with h5py.File(temporary, "r+") as out:
            added = _append_shards(out, shards)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, store_path)
        for shard in shards:
            shard.unlink()
        if not any(folder.iterdir()):
            folder.rmdir()
        write_failures_csv(store_path)
        return added


def read_videos(store_path: str | Path) -> pd.DataFrame:
    """The /videos table as a DataFrame (one row per stored video, in store order)."""
    with h5py.File(store_path, "r") as handle:
        return _read_table(handle, "videos", (*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS))


def read_failures(store_path: str | Path) -> pd.DataFrame:
    with h5py.File(store_path, "r") as handle:
        return _read_table(handle, "failures", FAILURE_COLUMNS)


def read_attrs(store_path: str | Path) -> dict:
    """Root attributes, with the JSON ones (feature_config, versions) decoded."""
    with h5py.File(store_path, "r") as handle:
        attrs = {name: handle.attrs[name] for name in handle.attrs}
    return {name: json.loads(value) if name in ("feature_config", "versions") else value for name, value in attrs.items()}


def write_failures_csv(store_path: str | Path) -> Path:
    """`<store>.failures.csv`: the failure table beside the store, for people and spreadsheets."""
    target = Path(f"{Path(store_path).with_suffix('')}.failures.csv")
    temporary = target.with_suffix(".csv.tmp")
    read_failures(store_path).drop(columns=["key"]).to_csv(temporary, index=False)
    os.replace(temporary, target)
    return target


def summary(store_path: str | Path) -> str:
    """Human summary of a store: config, videos per label and split, frames, failures."""
    attrs = read_attrs(store_path)
    videos = read_videos(store_path)
    failures = read_failures(store_path)
    config = attrs["feature_config"]
    lines = [f"store {store_path}", "feature config:"]
    lines += [f"  {name}: {value}" for name, value in config.items()]
    if attrs.get("fallback"):
        lines.append(f"  WARNING fallback: {attrs['fallback']}")
    with h5py.File(store_path, "r") as handle:
        dim = handle["features"].shape[1]
    lengths = videos["length"] if len(videos) else pd.Series([0])
    lines.append(f"videos: {len(videos)}  frames: {int(videos['length'].sum())}  feature dim: {dim}  "
                 f"frames per video: min {lengths.min()} mean {lengths.mean():.1f} max {lengths.max()}")
    if len(videos):
        counts = pd.crosstab(videos["label"], videos["split"].replace("", "(none)"), margins=True, margins_name="total")
        lines += ["videos per label and split:", *("  " + line for line in counts.to_string().splitlines())]
    lines.append(f"failures: {len(failures)}")
    lines += [f"  {row.path}: [{row.stage}] {row.message}" for row in failures.itertuples()]
    return "\n".join(lines)


# --- helpers ---------------------------------------------------------------------------------


def _row_fields(row: VideoRow) -> dict:
    return {name: getattr(row, name) for name in VIDEO_TEXT}


def _concat(arrays: list[np.ndarray], empty_shape: tuple) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(empty_shape, np.float32)


def _create_store(path: Path, attrs: dict, dim_dtype: tuple[int, str]) -> None:
    with h5py.File(path, "w") as out:
        out.attrs["schema_version"] = SCHEMA_VERSION
        for name, value in attrs.items():
            out.attrs[name] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value
        _create_frame_datasets(out, *dim_dtype)
        _write_table(out, "videos", pd.DataFrame(columns=[*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS]))
        _write_table(out, "failures", pd.DataFrame(columns=FAILURE_COLUMNS))


def _create_frame_datasets(out: h5py.File, dim: int, dtype: str) -> None:
    chunk_rows = max(1, min(1024, (1 << 20) // (dim * np.dtype(dtype).itemsize)))
    out.create_dataset("features", (0, dim), dtype=dtype, maxshape=(None, dim), chunks=(chunk_rows, dim))
    out.create_dataset("frame_index", (0,), dtype=np.int64, maxshape=(None,), chunks=(4096,))
    out.create_dataset("timestamps", (0,), dtype=np.float64, maxshape=(None,), chunks=(4096,))


def _shard_dim_dtype(shard: Path) -> tuple[int, str]:
    with h5py.File(shard, "r") as handle:
        return handle["features"].shape[1], handle["features"].dtype.name


def _append_frames(out: h5py.File, features: np.ndarray, frame_index: np.ndarray, timestamps: np.ndarray) -> int:
    """Append frame rows; return the offset of the first appended row."""
    start = out["features"].shape[0]
    for name, values in (("features", features), ("frame_index", frame_index), ("timestamps", timestamps)):
        dataset = out[name]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values.astype(dataset.dtype, copy=False)
    return start


def _append_shards(out: h5py.File, shards: list[Path]) -> int:
    """Append the shards' videos (manifest order, keys not yet stored) and update the failures."""
    stored = set(_read_text(out, "videos", "key"))
    pending, failures = [], []
    for shard in shards:
        with h5py.File(shard, "r") as handle:
            videos = _read_table(handle, "videos", (*VIDEO_TEXT, "order", *VIDEO_INTS, *VIDEO_FLOATS))
            videos["shard"] = str(shard)
            pending.append(videos)
            failures.append(_read_table(handle, "failures", (*FAILURE_COLUMNS, "order")))
    new = pd.concat(pending).sort_values("order", kind="stable").drop_duplicates("key")
    new = new[~new["key"].isin(stored)]
    table, buffered, handle, handle_name = [], [], None, None
    start = out["features"].shape[0]
    for video in new.itertuples(index=False):  # manifest order; consecutive videos mostly share a shard
        if video.shard != handle_name:
            if handle:
                handle.close()
            handle, handle_name = h5py.File(video.shard, "r"), video.shard
        rows = slice(video.offset, video.offset + video.length)
        buffered.append(tuple(handle[name][rows] for name in ("features", "frame_index", "timestamps")))
        table.append({**video._asdict(), "offset": start})
        start += video.length
        if sum(len(item[0]) for item in buffered) >= APPEND_ROWS:
            _append_frames(out, *(np.concatenate(column) for column in zip(*buffered)))
            buffered = []
    if handle:
        handle.close()
    if buffered:
        _append_frames(out, *(np.concatenate(column) for column in zip(*buffered)))
    old = _read_table(out, "videos", (*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS))
    new_rows = pd.DataFrame(table, columns=old.columns)
    # a re-extracted video (its file changed) replaces its old row; the old frames stay unreferenced
    videos = pd.concat([old[~old["video_id"].isin(new_rows["video_id"])], new_rows], ignore_index=True)
    _write_table(out, "videos", videos[list(old.columns)])

    old_failures = _read_table(out, "failures", FAILURE_COLUMNS)
    new_failures = pd.concat(failures).sort_values("order", kind="stable")[list(FAILURE_COLUMNS)]
    merged = pd.concat([old_failures, new_failures]).drop_duplicates("video_id", keep="last")
    merged = merged[~merged["video_id"].isin(videos["video_id"])]
    _write_table(out, "failures", merged)
    return len(table)


def _write_table(out: h5py.File, name: str, table: pd.DataFrame) -> None:
    """(Re)write a group of column datasets; string columns as UTF-8, numbers as int64/float64."""
    if name in out:
        del out[name]
    group = out.create_group(name)
    for column in table.columns:
        values = table[column].to_numpy()
        if column in (*VIDEO_INTS, "order"):
            group.create_dataset(column, data=values.astype(np.int64))
        elif column in VIDEO_FLOATS:
            group.create_dataset(column, data=values.astype(np.float64))
        else:
            group.create_dataset(column, data=np.array([str(v) for v in values], dtype=object), dtype=TEXT)


def _read_table(handle: h5py.File, name: str, columns) -> pd.DataFrame:
    group = handle[name]
    return pd.DataFrame({c: group[c].asstr()[:] if group[c].dtype.kind == "O" else group[c][:] for c in columns})


def _read_text(handle: h5py.File, name: str, column: str) -> list[str]:
    return list(handle[name][column].asstr()[:]) if name in handle else []
