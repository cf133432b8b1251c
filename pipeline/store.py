"""The HDF5 feature store: the contract between stage one (features) and stage two (train).

A store is a small index file plus immutable segment files beside it:

    <store>.h5              the index, what readers open (plain HDF5, readable with h5py alone):
      /                     attrs: schema_version, feature_config (JSON), config_hash, versions (JSON),
                            manifest, manifest_sha256, last_sync (JSON: what the last run changed)
      /videos/<col>         one entry per manifest video that is stored, in manifest order: video_id,
                            key, path, label, split, group (strings); total_frames, width, height,
                            offset, length (ints); fps (float). Rows offset .. offset+length of the
                            frame datasets belong to that video.
      /features             (frames, D) virtual dataset over the segments' frames, so that
      /frame_index          `f["features"][a:b]` reads like one dataset
      /timestamps
      /failures/<col>       one entry per manifest video that failed: video_id, key, path, stage, error, message
      /segments/<col>       name, rows: the segment files the virtual datasets concatenate, in order
    <store>.h5.segments/    seg-<hex>.h5: frames (and their own video table) of finished videos, never modified
    <store>.h5.parts/run-<hex>/ shard files of a run in progress; `run-<hex>.lock` is held while it lives

Adding k videos costs O(k): a run writes shard files; the merge hard-links them into the segment
folder (several shards of one merge are first copied into one segment, O(k) bytes) and writes a new
index (tables and the virtual-dataset mapping, a few MB for 50,000 videos) under a temporary name,
renamed over the old one. When the manifest only grew at its end (its first rows hash as the ones
last synced), the new index is a byte copy of the old one with the new rows appended to its
video table, so the existing rows are neither read nor converted. Nothing else is rewritten. A merge killed at any moment leaves the old
index valid; links it made that no index references are deleted by the next merge, which takes the
shards again. Frames nothing references (re-extracted, retired or duplicated videos) are garbage; a
merge that would leave more than GARBAGE_SHARE of the frames as garbage, or more than MAX_SEGMENTS
segments, compacts: it copies the live frames into one new segment (`compact` does it on demand).

The manifest is the truth for metadata: each merge rebuilds the video table from the manifest rows
(label, split, group, order) and the frames stored per key, so relabelled or moved rows take effect
without re-extracting, and rows that left the manifest leave the table.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import operator
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from .backbones import file_sha256  # backbones imports TensorFlow only inside functions

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
VIDEO_TEXT = ("video_id", "key", "path", "label", "split", "group")
VIDEO_INTS = ("total_frames", "width", "height", "offset", "length")
VIDEO_FLOATS = ("fps",)
VIDEO_COLUMNS = (*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS)
FAILURE_COLUMNS = ("video_id", "key", "path", "stage", "error", "message")
FRAME_DATASETS = ("features", "frame_index", "timestamps")
TEXT = h5py.string_dtype()
TABLE_CHUNK = 4096  # rows per chunk of the index's table columns (extendable, for merges that append)
APPEND_ROWS = 8192  # frames buffered per write while copying: bounds memory on large merges
GARBAGE_SHARE = 0.5  # compact when more than this share of the stored frames is unreferenced (disk <= 2x the live frames)
MAX_SEGMENTS = 256  # compact past this many segments: a reader of the whole store opens every segment file
TRANSIENT_STAGES = ("lost", "killed")  # failures that need not be the file's fault (lost dask task, OOM kill): retried by every run
LOCK_NOTICE_S = 5.0  # after this long waiting for another run's merge, say so
CHANGE_LIST = 1000  # ids listed per kind of change in last_sync (the counts are always complete)


class StoreError(Exception):
    """The store cannot be used as asked; the message names it and says what to do."""


@dataclass
class VideoRow:
    """One video of the manifest, as stage one sees it."""

    video_id: str
    key: str
    path: str
    label: str
    split: str = ""
    group: str = ""
    order: int = 0  # position in the manifest: the video table keeps manifest order


def video_key(path: str | Path) -> str:
    """Identity of a video file: resolved path, size and modification time (changes when it does)."""
    return resolved_video_key(str(Path(path).resolve()))


def resolved_video_key(path: str) -> str:
    """`video_key` of a path already resolved (as `read_manifest` gives them): one stat, no lstat per folder."""
    try:
        stat = os.stat(path)
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


@dataclass
class SyncReport:
    """What a merge left in the store for its manifest, and what it changed."""

    stored: int = 0  # manifest rows in the video table
    failed: int = 0  # manifest rows in the failure table
    changes: dict = field(default_factory=dict)  # relabelled, moved, regrouped, retired, replaced: counts
    compacted: bool = False


def parts_dir(store_path: str | Path) -> Path:
    return Path(f"{store_path}.parts")


def segments_dir(store_path: str | Path) -> Path:
    return Path(f"{store_path}.segments")


@contextlib.contextmanager
def shard_run(store_path: str | Path):
    """A run's own shard folder, `<store>.h5.parts/run-<hex>/`, marked live by a lock held while it runs.

    A merge takes every complete shard, but deletes half-written ones only in folders of dead runs.
    """
    folder = parts_dir(store_path) / f"run-{uuid.uuid4().hex[:12]}"
    folder.parent.mkdir(parents=True, exist_ok=True)
    alive = FileLock(f"{folder}.lock")
    try:
        with alive:
            folder.mkdir()
            try:
                yield folder
            finally:
                with contextlib.suppress(OSError):
                    folder.rmdir()  # empty once merged
    finally:  # also when the run ends by an exception (Ctrl-C, --lock-timeout): no lock or folder left behind
        with contextlib.suppress(OSError):
            Path(f"{folder}.lock").unlink()
            folder.parent.rmdir()  # the last run out leaves no folder


def write_shard(folder: str | Path, shard: Shard, dim: int, dtype: str) -> Path:
    """Write a shard file into a run's folder: under a temporary name, renamed once complete."""
    final = Path(folder) / f"shard-{uuid.uuid4().hex}.h5"
    temporary = final.with_suffix(".h5.tmp")
    videos = pd.DataFrame(shard.videos, columns=[*VIDEO_TEXT, "order", *VIDEO_INTS[:3], "fps", "length"])
    videos["offset"] = np.concatenate([[0], np.cumsum(videos["length"].to_numpy())[:-1]]).astype(np.int64) if len(videos) else []
    with h5py.File(temporary, "w") as out:
        _create_frame_datasets(out, dim, dtype, int(videos["length"].sum()))
        _append_frames(out, _concat(shard.features, (0, dim)), _concat(shard.frame_index, (0,)), _concat(shard.timestamps, (0,)))
        _write_table(out, "videos", videos, fitted=True)
        _write_table(out, "failures", pd.DataFrame(shard.failures, columns=[*FAILURE_COLUMNS, "order"]), fitted=True)
    os.replace(temporary, final)
    return final


def shard_keys(store_path: str | Path) -> tuple[set[str], set[str]]:
    """Keys of videos (done, failed for a reason of the file's own) held in complete shards not merged yet."""
    done, failed = set(), set()
    for shard in _complete_shards(store_path):
        with contextlib.suppress(OSError):  # merged and deleted by another run meanwhile
            with h5py.File(shard, "r") as handle:
                done.update(_read_text(handle, "videos", "key"))
                stages = _read_text(handle, "failures", "stage")
                failed.update(key for key, stage in zip(_read_text(handle, "failures", "key"), stages) if stage not in TRANSIENT_STAGES)
    return done, failed


def merge_shards(store_path: str | Path, attrs: dict, rows: list[VideoRow], missing: list[dict] = (), *,
                 dim_dtype: tuple | None = None, lock_timeout: float = 600.0, on_step=None, own_run: Path | None = None) -> SyncReport:
    """Fold every complete shard into the store and sync its tables with the manifest `rows`.

    `attrs` (feature config, manifest, versions...) are checked against the store's own and
    recorded. The video table becomes the manifest rows whose key has frames, the failure table the
    rest that failed, plus `missing` rows (dicts of VIDEO_TEXT fields) as stage `missing`.
    `dim_dtype` (feature dim, dtype) shapes a store created before any frame exists. Waits
    for another run's merge up to `lock_timeout` seconds. `on_step(name)`, if given, is called
    between the steps (tests kill the process there). A shard of another live run (its lock held;
    `own_run` is the caller's run folder) holding a key not in `rows` is read, its frames copied,
    but never deleted: its other videos belong to a manifest this merge does not know, and that
    run merges them itself.
    """
    store_path = Path(store_path)
    step = on_step or (lambda name: None)
    _refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    with store_lock(store_path, lock_timeout):
        index = _load_index(store_path, ("offset", "length")) if store_path.exists() else _Index.empty()
        _check_owner(store_path, index.attrs, attrs)
        _remove_unreferenced(store_path, set(index.segments["name"]))
        shards = _complete_shards(store_path)
        foreign = _foreign_shards(shards, rows, own_run)
        committed = [s for s in shards if s.name in set(index.segments["name"])]  # merged by a merge killed before cleanup
        fresh = [s for s in shards if s not in committed]
        new, new_failures, shard_dim_dtype = _shard_tables(fresh)
        dim_dtype = index.dim_dtype or shard_dim_dtype or dim_dtype
        synced, digest = _grown_from(index, rows, new, new_failures)
        appending = synced is not None
        if not appending:  # anything but rows appended: rebuild the tables from the whole manifest
            index.videos = _load_index(store_path).videos if store_path.exists() else index.videos
            synced, kept, stored = 0, index.failures.iloc[:0], _stored_frames(store_path, index)
        else:  # the synced rows stand as they are: sync only the rows after them
            kept, stored = index.failures[index.failures["stage"] != "missing"], pd.DataFrame(columns=_FRAME_COLUMNS)
        manifest = pd.DataFrame({name: pd.Series([getattr(row, name) for row in rows[synced:]], dtype=np.int64 if name == "order" else object)
                                 for name in (*VIDEO_TEXT, "order")})
        new = new[new["key"].isin(set(manifest["key"])) & ~new["key"].isin(set(stored["key"]))].drop_duplicates("key")
        segments = index.segments
        if len(new):
            name, rows_count, new = _new_segment(store_path, new, dim_dtype, link=foreign.isdisjoint(map(Path, new["file"])))
            segments = pd.concat([segments, pd.DataFrame({"name": [name], "rows": [rows_count]})], ignore_index=True)
        frames = pd.concat([stored, new[stored.columns]], ignore_index=True)
        step("segment_written")
        videos = _sync_videos(manifest, frames)
        failures = pd.concat([kept, _sync_failures(manifest, videos, index.failures, new_failures, missing)], ignore_index=True)
        changes = _changes(videos.iloc[:0] if appending else index.videos, videos)
        live = videos.drop_duplicates(["file", "start"])["length"].sum() + (_live_rows(index.videos) if appending else 0)
        total = int(segments["rows"].sum())
        compact = total > 0 and ((total - live) / total > GARBAGE_SHARE or len(segments) > MAX_SEGMENTS)
        if compact:  # never when appending: _grown_from leaves those merges to the full rebuild
            videos, segments = _compact(store_path, videos, dim_dtype)
            step("compacted")
        videos = _with_offsets(videos, segments)
        record = {**index.attrs, **{k: v for k, v in attrs.items() if v is not None}, "synced_rows": len(rows), "synced_digest": digest}
        record["last_sync"] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **changes}
        stale_report = any(isinstance(v, dict) and v.get("count") for v in index.attrs.get("last_sync", {}).values())
        unchanged = (not fresh and not compact and not stale_report and _same(failures, index.failures)
                     and (not len(videos) if appending else _same(videos, index.videos))
                     and all(index.attrs.get(k) == record.get(k) for k in ("manifest", "manifest_sha256", "config_hash", "synced_rows", "synced_digest")))
        if not unchanged:
            (_append_index if appending else _write_index)(store_path, record, videos, failures, segments, dim_dtype, step)
        step("index_swapped")
        for shard in committed + fresh:
            if shard not in foreign:
                shard.unlink()
        _remove_unreferenced(store_path, set(segments["name"]))
        _remove_dead_runs(store_path)
        write_failures_csv(store_path)
    stored_count = len(videos) + (len(index.videos) if appending else 0)
    report = SyncReport(stored_count, len(failures), {k: v["count"] for k, v in changes.items()}, compact)
    if any(report.changes.values()):
        log.info("synced with the manifest: %s", ", ".join(f"{n} {k}" for k, n in report.changes.items() if n))
    return report


def compact(store_path: str | Path, lock_timeout: float = 600.0) -> dict:
    """Rewrite the live frames into one segment and drop every other; migrate a version-1 store.

    Returns {frames_before, frames_after, segments_before}. A version-1 store (one file holding
    everything) becomes the single segment of a new index first, without copying.
    """
    store_path = Path(store_path)
    _refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    with store_lock(store_path, lock_timeout):
        if _schema_version(store_path) == 1:
            _migrate_v1(store_path)
        index = _load_index(store_path)
        manifest = index.videos[list(VIDEO_TEXT)].assign(order=np.arange(len(index.videos)))
        videos = _sync_videos(manifest, _stored_frames(store_path, index))
        before = {"frames_before": int(index.segments["rows"].sum()), "segments_before": len(index.segments)}
        videos, segments = _compact(store_path, videos, index.dim_dtype)
        videos = _with_offsets(videos, segments)
        _write_index(store_path, index.attrs, videos, index.failures, segments, index.dim_dtype)
        _remove_unreferenced(store_path, set(segments["name"]))
    return {**before, "frames_after": int(segments["rows"].sum())}


def recover(store_path: str | Path, lock_timeout: float = 600.0) -> dict:
    """Rebuild a store whose index is unreadable from its readable segments; name the lost ones.

    The new index holds every video of every readable segment, and no manifest hash: the next
    `features` run syncs it with the manifest and re-extracts only what was lost. The broken index
    is kept as `<store>.h5.broken` for inspection.
    """
    store_path = Path(store_path)
    _refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    if not segments_dir(store_path).is_dir():
        raise StoreError(f"nothing to recover for {store_path}: it has no {segments_dir(store_path).name}/ folder")
    with store_lock(store_path, lock_timeout):
        readable, lost, tables = [], [], []
        with contextlib.suppress(OSError, StoreError, KeyError):  # an unreadable index names none
            lost += [f"{name} (referenced by the index, but the file is gone)" for name in missing_segments(store_path)]
        for segment in sorted(segments_dir(store_path).glob("*.h5"), key=lambda p: p.stat().st_mtime_ns):
            try:
                with h5py.File(segment, "r") as handle:
                    table = _read_table(handle, "videos", (*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS))
                    readable.append((segment.name, handle["features"].shape[0], (handle["features"].shape[1], handle["features"].dtype.name)))
                    tables.append(table.assign(file=segment.name, start=table["offset"]))
            except (OSError, KeyError) as error:
                lost.append(f"{segment.name} ({error})")
        if not readable:
            raise StoreError(f"nothing readable to recover in {segments_dir(store_path)}; move {store_path} and its "
                             f"folders aside and rerun `python -m pipeline features`")
        attrs = {}
        with contextlib.suppress(OSError, StoreError, KeyError):
            attrs = {k: v for k, v in read_attrs(store_path).items() if k not in ("manifest_sha256", "last_sync", "synced_rows", "synced_digest")}
        if store_path.exists():
            os.replace(store_path, f"{store_path}.broken")
        segments = pd.DataFrame({"name": [r[0] for r in readable], "rows": [r[1] for r in readable]})
        frames = pd.concat(tables, ignore_index=True).drop_duplicates("key", keep="last")
        videos = _sync_videos(frames.assign(order=np.arange(len(frames)))[[*VIDEO_TEXT, "order"]], frames[_FRAME_COLUMNS])
        attrs["last_sync"] = {"recovered": True}
        videos = _with_offsets(videos, segments)
        _write_index(store_path, attrs, videos, pd.DataFrame(columns=FAILURE_COLUMNS), segments, readable[0][2])
    return {"videos": len(videos), "segments": len(readable), "lost_segments": lost}


@contextlib.contextmanager
def store_lock(store_path: str | Path, timeout: float):
    """The store's merge lock; waits up to `timeout` seconds for another run's merge, saying so."""
    lock = FileLock(f"{store_path}.lock")
    try:
        lock.acquire(timeout=min(LOCK_NOTICE_S, timeout))
    except Timeout:
        log.info("waiting for another run's merge into %s (lock %s.lock; up to %gs, --lock-timeout)", store_path, store_path, timeout)
        try:
            lock.acquire(timeout=max(0.0, timeout - LOCK_NOTICE_S))
        except Timeout:
            raise StoreError(f"another run has been merging into {store_path} for over {timeout:g}s; try again later or "
                             f"raise --lock-timeout (its finished videos are kept)") from None
    try:
        yield
    finally:
        lock.release()


def require_in_sync(store_path: str | Path) -> None:
    """Refuse a store whose manifest changed since its last sync, or whose segments are missing.

    Stage two calls this when it opens a store: a relabelled or retired video must not reach
    training unseen. A store with no recorded manifest (made from Python) passes.
    """
    attrs = read_attrs(store_path)
    manifest, recorded = attrs.get("manifest", ""), attrs.get("manifest_sha256", "")
    if manifest and recorded:
        if not Path(manifest).is_file():
            log.warning("the manifest %s of store %s is gone; using the store as last synced", manifest, store_path)
        elif file_sha256(manifest) != recorded:
            raise StoreError(f"the manifest {manifest} changed since the feature store {store_path} was last synced with it "
                             f"(labels, splits or rows may differ). Sync it (nothing is re-extracted): "
                             f"{sync_command(store_path, attrs)}")
    elif attrs.get("last_sync", {}).get("recovered"):
        raise StoreError(f"the feature store {store_path} was recovered and not synced with its manifest yet: "
                         f"{sync_command(store_path, attrs)} (with the options it was made with)")
    require_segments(store_path)


def missing_segments(store_path: str | Path) -> list[str]:
    """Segment files the index references that do not exist (one stat each): plain h5py would read their frames as zeros."""
    return [name for name in _index_segments(Path(store_path)) if not (segments_dir(store_path) / name).is_file()]


def require_segments(store_path: str | Path) -> None:
    """Refuse a store whose index references a segment file that is gone (copied without its folder, or deleted)."""
    missing = missing_segments(store_path)
    if missing:
        raise StoreError(f"the feature store {store_path} lacks {len(missing)} segment file(s) in {segments_dir(store_path)}: "
                         f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}; copy the whole folder with the store, "
                         f"or run `python -m pipeline compact {store_path} --recover` and then `features` again")


def check_owner(store_path: str | Path, attrs: dict) -> None:
    """Refuse, before any work, a store that belongs to another manifest or feature config."""
    if Path(store_path).exists():
        _check_owner(Path(store_path), read_attrs(store_path), attrs)


def sync_command(store_path: str | Path, attrs: dict) -> str:
    """The `features` command line that syncs this store with its manifest (same feature config)."""
    config = attrs.get("feature_config", {})
    weights = attrs.get("weights_path") or config.get("weights", "imagenet")
    options = [f"--{name.replace('_', '-')} {config[name]}" for name in ("backbone", "image_size", "crop", "sampling", "max_frames", "dtype", "precision", "pooling") if name in config]
    return f"python -m pipeline features --manifest {attrs.get('manifest', 'MANIFEST')} --store {store_path} --weights {weights} {' '.join(options)}"


def read_videos(store_path: str | Path) -> pd.DataFrame:
    """The /videos table as a DataFrame (one row per stored video, in manifest order)."""
    with _open(store_path) as handle:
        return _read_table(handle, "videos", VIDEO_COLUMNS)


def stored_keys(store_path: str | Path) -> tuple[set[str], set[str]]:
    """Keys of the stored videos, and of failures for a reason of the file's own (read without the rest of the tables)."""
    with _open(store_path) as handle:
        failures = _read_table(handle, "failures", ("key", "stage"))
        return set(_read_text(handle, "videos", "key")), set(failures.loc[~failures["stage"].isin(TRANSIENT_STAGES), "key"])


def read_failures(store_path: str | Path) -> pd.DataFrame:
    with _open(store_path) as handle:
        return _read_table(handle, "failures", FAILURE_COLUMNS)


def read_attrs(store_path: str | Path) -> dict:
    """Root attributes, with the JSON ones (feature_config, versions, last_sync) decoded."""
    with _open(store_path) as handle:
        return _decode_attrs(handle)


def write_failures_csv(store_path: str | Path) -> Path:
    """`<store>.failures.csv`: the failure table beside the store, for people and spreadsheets."""
    target = Path(f"{Path(store_path).with_suffix('')}.failures.csv")
    temporary = target.with_suffix(".csv.tmp")
    read_failures(store_path).drop(columns=["key"]).to_csv(temporary, index=False)
    os.replace(temporary, target)
    return target


def summary(store_path: str | Path) -> str:
    """Human summary of a store: config, manifest and last sync, videos per label and split, frames, failures."""
    attrs = read_attrs(store_path)
    videos = read_videos(store_path)
    failures = read_failures(store_path)
    config = attrs["feature_config"]
    lines = [f"store {store_path}", f"manifest: {attrs.get('manifest') or '(not recorded)'}", "feature config:"]
    lines += [f"  {name}: {value}" for name, value in config.items()]
    if attrs.get("fallback"):
        lines.append(f"  WARNING fallback: {attrs['fallback']}")
    with _open(store_path) as handle:
        dim, rows = handle["features"].shape[1], handle["features"].shape[0]
        segments = len(handle["segments"]["name"])
    lengths = videos["length"] if len(videos) else pd.Series([0])
    lines.append(f"videos: {len(videos)}  frames: {int(videos['length'].sum())}  feature dim: {dim}  "
                 f"frames per video: min {lengths.min()} mean {lengths.mean():.1f} max {lengths.max()}")
    lines.append(f"segments: {segments}  stored frame rows: {rows} ({rows - int(videos.drop_duplicates('offset')['length'].sum())} "
                 f"unreferenced; `python -m pipeline compact {store_path}` reclaims them)")
    lines += [f"  MISSING segment file {segments_dir(store_path) / name} (its frames read as zeros)" for name in missing_segments(store_path)]
    sync = attrs.get("last_sync", {})
    kinds = [kind for kind in _CHANGE_KINDS if sync.get(kind, {}).get("count")]
    lines.append(f"last run ({sync.get('time', '?')}): " + (", ".join(f"{sync[k]['count']} {k}" for k in kinds) if kinds else "no metadata changes"))
    for kind in kinds:
        lines += [f"  {kind}: {item}" for item in sync[kind]["ids"][:20]]
    if len(videos):
        counts = pd.crosstab(videos["label"], videos["split"].replace("", "(none)"), margins=True, margins_name="total")
        lines += ["videos per label and split:", *("  " + line for line in counts.to_string().splitlines())]
    lines.append(f"failures: {len(failures)}")
    lines += [f"  {row.path}: [{row.stage}] {row.message}" for row in failures.itertuples()]
    return "\n".join(lines)


# --- helpers ---------------------------------------------------------------------------------

_FRAME_COLUMNS = ["key", "total_frames", "width", "height", "fps", "length", "file", "start"]  # where a key's frames are
_ROW_TEXT, _KEY = operator.attrgetter(*VIDEO_TEXT), operator.attrgetter("key")
_CHANGE_KINDS = ("relabelled", "moved", "regrouped", "retired", "replaced")


@dataclass
class _Index:
    attrs: dict
    videos: pd.DataFrame
    failures: pd.DataFrame
    segments: pd.DataFrame
    dim_dtype: tuple | None

    @classmethod
    def empty(cls) -> "_Index":
        return cls({}, pd.DataFrame(columns=VIDEO_COLUMNS), pd.DataFrame(columns=FAILURE_COLUMNS),
                   pd.DataFrame({"name": pd.Series(dtype=str), "rows": pd.Series(dtype=np.int64)}), None)


@contextlib.contextmanager
def _open(store_path: str | Path):
    """Open a store's index for reading; a missing, truncated, foreign or old one is a StoreError naming it."""
    if not Path(store_path).is_file():
        raise StoreError(f"no feature store at {store_path}; run `python -m pipeline features` first")
    _refuse_foreign(store_path)
    try:
        handle = h5py.File(store_path, "r")
    except OSError as error:
        raise StoreError(f"the feature store {store_path} cannot be read ({error}); it is truncated or corrupt. Recover "
                         f"what is readable with `python -m pipeline compact {store_path} --recover`, then rerun "
                         f"`python -m pipeline features` to complete it") from None
    with handle:
        version = int(handle.attrs.get("schema_version", 0))
        if version == 1:
            raise StoreError(f"the feature store {store_path} has the layout of version 1 (one file, copied on every merge); "
                             f"migrate it in place, without re-extracting, with `python -m pipeline compact {store_path}`")
        if version != SCHEMA_VERSION:
            raise StoreError(f"{store_path} is not a feature store of this version (schema_version {version}, expected "
                             f"{SCHEMA_VERSION}); point --store at a path of its own")
        yield handle


def _refuse_foreign(store_path: str | Path) -> None:
    """A file with no store attributes and no segment folder is someone else's: refuse it, advise nothing about it."""
    ours = segments_dir(store_path).is_dir() or Path(f"{Path(store_path).with_suffix('')}.failures.csv").is_file()  # every merge writes both
    if Path(store_path).is_file() and not ours and _schema_version(Path(store_path)) == 0:
        raise StoreError(f"{store_path} is not a feature store (no store attributes, no {segments_dir(store_path).name}/ folder); "
                         f"point --store at a path of its own")


def _schema_version(store_path: Path) -> int:
    try:
        with h5py.File(store_path, "r") as handle:
            return int(handle.attrs.get("schema_version", 0))
    except OSError:
        return 0


def _decode_attrs(handle: h5py.File) -> dict:
    attrs = {name: handle.attrs[name] for name in handle.attrs}
    return {name: json.loads(value) if name in ("feature_config", "versions", "last_sync") else value for name, value in attrs.items()}


def _load_index(store_path: Path, video_columns=VIDEO_COLUMNS) -> _Index:
    """The index's tables; of the video table only `video_columns` (its text columns are the slow part)."""
    with _open(store_path) as handle:
        features = handle["features"]
        return _Index(_decode_attrs(handle), _read_table(handle, "videos", video_columns), _read_table(handle, "failures", FAILURE_COLUMNS),
                      _read_table(handle, "segments", ("name", "rows")), (features.shape[1], features.dtype.name))


def _index_segments(store_path: Path) -> list[str]:
    with _open(store_path) as handle:
        return _read_text(handle, "segments", "name")


def _check_owner(store_path: Path, stored: dict, attrs: dict) -> None:
    """One store per dataset and feature config: refuse another manifest's or config's store."""
    if stored.get("manifest") and attrs.get("manifest") and stored["manifest"] != attrs["manifest"]:
        raise StoreError(f"the feature store {store_path} belongs to the manifest {stored['manifest']}, not to {attrs['manifest']}; "
                         f"two manifests never share a store: leave out --store (each manifest gets its own), or pass another path")
    if stored.get("config_hash") and attrs.get("config_hash") and stored["config_hash"] != attrs["config_hash"]:
        raise StoreError(f"the feature store {store_path} holds features of another config ({stored['feature_config']}); "
                         f"leave out --store so that this config gets its own store, or pass another path")


def _complete_shards(store_path: str | Path) -> list[Path]:
    return sorted(parts_dir(store_path).glob("run-*/*.h5"))


def _foreign_shards(shards: list[Path], rows: list[VideoRow], own_run: Path | None) -> set[Path]:
    """Shards a merge must not delete: those of another live run that hold a key not in `rows`."""
    live = {folder for folder in {shard.parent for shard in shards} if folder != own_run and _run_is_live(folder)}
    if not live:
        return set()
    keys = set(map(_KEY, rows))

    def foreign(shard: Path) -> bool:
        with h5py.File(shard, "r") as handle:
            return not (keys.issuperset(_read_text(handle, "videos", "key")) and keys.issuperset(_read_text(handle, "failures", "key")))

    return {shard for shard in shards if shard.parent in live and foreign(shard)}


def _run_is_live(folder: Path) -> bool:
    """Whether the run owning `folder` still holds its lock (a run that ended or died does not)."""
    lock = FileLock(f"{folder}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def _stored_frames(store_path: Path, index: _Index) -> pd.DataFrame:
    """Where each stored key's frames are: segment file and row within it, from the global offsets."""
    videos = index.videos.drop_duplicates("key")
    starts = np.concatenate([[0], np.cumsum(index.segments["rows"].to_numpy(np.int64))])
    position = np.searchsorted(starts, videos["offset"].to_numpy(np.int64), side="right") - 1
    names = (f"{segments_dir(store_path)}/" + index.segments["name"]).to_numpy(object)
    return videos.assign(file=names[position] if len(videos) else [],
                         start=videos["offset"].to_numpy(np.int64) - starts[position])[_FRAME_COLUMNS].reset_index(drop=True)


def _shard_tables(shards: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, tuple | None]:
    """Videos (with file and start) and failures of complete shards, in manifest order; their (dim, dtype)."""
    videos = [pd.DataFrame(columns=[*VIDEO_TEXT, "order", *_FRAME_COLUMNS[1:]])]
    failures, dim_dtype = [pd.DataFrame(columns=[*FAILURE_COLUMNS, "order"])], None
    for shard in shards:
        with h5py.File(shard, "r") as handle:
            table = _read_table(handle, "videos", (*VIDEO_TEXT, "order", *VIDEO_INTS, *VIDEO_FLOATS))
            videos.append(table.assign(file=str(shard), start=table["offset"]))
            failures.append(_read_table(handle, "failures", (*FAILURE_COLUMNS, "order")))
            dim_dtype = dim_dtype or (handle["features"].shape[1], handle["features"].dtype.name)
    return (pd.concat(videos, ignore_index=True).sort_values("order", kind="stable"),
            pd.concat(failures, ignore_index=True).sort_values("order", kind="stable"), dim_dtype)


def _new_segment(store_path: Path, new: pd.DataFrame, dim_dtype: tuple, link: bool = True) -> tuple[str, int, pd.DataFrame]:
    """Make the new videos' frames one segment: a hard link to their shard (if `link`), or a copy of the shards' frames."""
    folder = segments_dir(store_path)
    folder.mkdir(exist_ok=True)
    files = new["file"].unique()
    if len(files) == 1 and link:
        shard = Path(files[0])
        with contextlib.suppress(FileExistsError):
            _link_or_copy(shard, folder / shard.name)
        with h5py.File(shard, "r") as handle:
            rows = handle["features"].shape[0]
        return shard.name, rows, new.assign(file=str(folder / shard.name))
    name = f"seg-{uuid.uuid4().hex}.h5"
    starts = _copy_frames(folder / name, new, dim_dtype)
    return name, int(new["length"].sum()), new.assign(file=str(folder / name), start=starts)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as error:
        if isinstance(error, FileExistsError):
            raise
        temporary = target.with_suffix(".h5.tmp")  # a filesystem without hard links
        temporary.write_bytes(source.read_bytes())
        os.replace(temporary, target)


def _copy_frames(target: Path, videos: pd.DataFrame, dim_dtype: tuple) -> np.ndarray:
    """Copy the frames of `videos` (file, start, length) into a new segment file; return their new starts."""
    temporary = target.with_suffix(".h5.tmp")
    starts, buffered, handles, position = [], [], {}, 0
    try:
        with h5py.File(temporary, "w") as out:
            _create_frame_datasets(out, *dim_dtype, int(videos["length"].sum()))
            for video in videos.itertuples(index=False):
                handle = handles.get(video.file) or handles.setdefault(video.file, h5py.File(video.file, "r"))
                rows = slice(int(video.start), int(video.start) + int(video.length))
                buffered.append(tuple(handle[name][rows] for name in FRAME_DATASETS))
                starts.append(position)
                position += int(video.length)
                if sum(len(item[0]) for item in buffered) >= APPEND_ROWS:
                    _append_frames(out, *(np.concatenate(column) for column in zip(*buffered)))
                    buffered = []
            if buffered:
                _append_frames(out, *(np.concatenate(column) for column in zip(*buffered)))
            table = videos[[c for c in VIDEO_COLUMNS if c != "offset"]].assign(offset=np.asarray(starts, np.int64))
            _write_table(out, "videos", table, fitted=True)
            _write_table(out, "failures", pd.DataFrame(columns=FAILURE_COLUMNS), fitted=True)
    finally:
        for handle in handles.values():
            handle.close()
    _fsync(temporary)
    os.replace(temporary, target)
    return np.asarray(starts, np.int64)


def _sync_videos(manifest: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """The video table: manifest rows (in order) whose key has frames, with those frames' location."""
    frames = frames.drop_duplicates("key").astype({"key": object})  # an empty one has no string type
    joined = manifest.merge(frames, on="key", how="inner").sort_values("order", kind="stable")
    return joined.drop(columns="order").reset_index(drop=True)


def _sync_failures(manifest: pd.DataFrame, videos: pd.DataFrame, old: pd.DataFrame, new: pd.DataFrame, missing) -> pd.DataFrame:
    """Failure rows of manifest videos not stored: this run's failure of their key, else an earlier one."""
    outcome = pd.concat([old, new[list(FAILURE_COLUMNS)]], ignore_index=True).drop_duplicates("key", keep="last").astype({"key": object})
    pending = manifest[~manifest["key"].isin(set(videos["key"]))]
    failed = pending.merge(outcome[["key", "stage", "error", "message"]], on="key", how="inner").sort_values("order", kind="stable")
    gone = pd.DataFrame([{**row, "stage": "missing", "error": "FileNotFoundError",
                          "message": "file not found; --skip-missing left it out (fix the path or remove the row)"} for row in missing],
                        columns=FAILURE_COLUMNS)
    return pd.concat([failed[list(FAILURE_COLUMNS)], gone], ignore_index=True)


def _changes(old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """What a sync changed, by video id: relabelled, moved (split), regrouped, retired (left), replaced (file changed)."""
    both = old.merge(new, on="video_id", suffixes=("_old", ""))
    found = {
        "relabelled": both.loc[both["label_old"] != both["label"], ["video_id", "label_old", "label"]],
        "moved": both.loc[both["split_old"] != both["split"], ["video_id", "split_old", "split"]],
        "regrouped": both.loc[both["group_old"] != both["group"], ["video_id", "group_old", "group"]],
        "replaced": both.loc[both["key_old"] != both["key"], ["video_id"]],
        "retired": old.loc[~old["video_id"].isin(set(new["video_id"])), ["video_id"]],
    }
    return {kind: {"count": len(rows), "ids": [" -> ".join(map(str, values)) if len(values) > 1 else values[0]
                                               for values in rows.head(CHANGE_LIST).itertuples(index=False)]}
            for kind, rows in found.items()}


def _grown_from(index: _Index, rows: list[VideoRow], new: pd.DataFrame, new_failures: pd.DataFrame) -> tuple[int | None, str]:
    """How many leading manifest rows the store is already synced with, if a merge need only append; and the digest of all rows.

    The index records the digest of the manifest rows it was last synced with. When the current
    manifest starts with those very rows (texts and order), no shard of this merge holds one of
    their keys, no later row names one of their files, and the merge leaves no reason to compact,
    the tables of those rows stand: only the rows after them are synced and appended (O(k), not
    O(store)). Otherwise (None) the tables are rebuilt from the whole manifest.
    """
    synced = index.attrs.get("synced_rows")
    prefix, digest = _digests(rows, min(len(rows), synced or 0))
    if synced is None or synced > len(rows) or prefix != index.attrs.get("synced_digest"):
        return None, digest
    earlier = set(map(_KEY, rows[:synced]))
    later = set(map(_KEY, rows[synced:]))
    if earlier.intersection(later) or earlier.intersection(new["key"]) or earlier.intersection(new_failures["key"]):
        return None, digest
    added = new[new["key"].isin(later)].drop_duplicates("key")["length"].sum()
    total = index.segments["rows"].sum() + new["length"].sum()  # at most: a linked shard brings all its frames
    live = _live_rows(index.videos) + added
    if total and ((total - live) / total > GARBAGE_SHARE or len(index.segments) + 1 > MAX_SEGMENTS):
        return None, digest
    return synced, digest


def _digests(rows: list[VideoRow], cut: int) -> tuple[str, str]:
    """sha256 of the manifest rows' texts, over the first `cut` rows and over all of them."""
    hasher = hashlib.sha256()
    _feed(hasher, rows[:cut])
    prefix = hasher.hexdigest()
    _feed(hasher, rows[cut:])
    return prefix, hasher.hexdigest()


def _feed(hasher, rows: list[VideoRow]) -> None:
    """Each text NUL-terminated (manifests refuse NUL bytes): feeding rows in two parts equals feeding them at once."""
    if rows:
        try:
            text = "\0".join(itertools.chain.from_iterable(map(_ROW_TEXT, rows)))
        except TypeError:  # a value that is not a string (rows made from Python)
            text = "\0".join(map(str, itertools.chain.from_iterable(map(_ROW_TEXT, rows))))
        hasher.update((text + "\0").encode("utf-8", "surrogatepass"))


def _live_rows(videos: pd.DataFrame) -> int:
    """Frame rows an index's video table references (a file under two ids counts once)."""
    return int(videos.drop_duplicates("offset")["length"].sum())


def _compact(store_path: Path, videos: pd.DataFrame, dim_dtype: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Copy the frames the table references (once per key) into one new segment; return the table and segment list."""
    unique = videos.drop_duplicates("key")
    name = f"seg-{uuid.uuid4().hex}.h5"
    segments_dir(store_path).mkdir(exist_ok=True)
    starts = _copy_frames(segments_dir(store_path) / name, unique, dim_dtype)
    moved = pd.DataFrame({"key": unique["key"].to_numpy(), "file": str(segments_dir(store_path) / name), "start": starts})
    videos = videos.drop(columns=["file", "start"]).merge(moved, on="key", how="left")
    return videos, pd.DataFrame({"name": [name], "rows": [int(unique["length"].sum())]})


def _write_index(store_path: Path, attrs: dict, videos: pd.DataFrame, failures: pd.DataFrame, segments: pd.DataFrame,
                 dim_dtype: tuple, step=lambda name: None) -> None:
    """Write the index under a temporary name and rename it over the store: readers see the old or the new one."""
    temporary = store_path.with_name(store_path.name + ".index.tmp")
    with h5py.File(temporary, "w") as out:
        _write_attrs(out, attrs)
        _write_frame_mapping(out, store_path, segments, dim_dtype)
        _write_table(out, "videos", videos[list(VIDEO_COLUMNS)])
        _write_table(out, "failures", failures[list(FAILURE_COLUMNS)])
        _write_table(out, "segments", segments)
    _fsync(temporary)
    step("index_written")
    os.replace(temporary, store_path)


def _append_index(store_path: Path, attrs: dict, added: pd.DataFrame, failures: pd.DataFrame, segments: pd.DataFrame,
                  dim_dtype: tuple, step=lambda name: None) -> None:
    """`_write_index` for a merge that only appends videos: a copy of the index with `added` appended to its video table.

    Copying the file is a fast byte copy; the video table's existing rows are neither read nor
    converted. The small tables and the frame mapping are rewritten. Renamed over the store as
    `_write_index` does.
    """
    temporary = store_path.with_name(store_path.name + ".index.tmp")
    shutil.copyfile(store_path, temporary)
    with h5py.File(temporary, "r+") as out:
        _write_attrs(out, attrs)
        for column in VIDEO_COLUMNS:
            dataset = out["videos"][column]
            start = dataset.shape[0]
            dataset.resize((start + len(added),))
            dataset[start:] = _column_values(column, added[column])
        for name in FRAME_DATASETS:
            del out[name]
        _write_frame_mapping(out, store_path, segments, dim_dtype)
        _write_table(out, "failures", failures[list(FAILURE_COLUMNS)])
        _write_table(out, "segments", segments)
    _fsync(temporary)
    step("index_written")
    os.replace(temporary, store_path)


def _with_offsets(videos: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Global row offsets into the virtual datasets, from each video's segment file and row within it."""
    starts = pd.Series(np.concatenate([[0], np.cumsum(segments["rows"].to_numpy(np.int64))])[:-1], index=segments["name"].to_numpy())
    names = videos["file"].str.rsplit("/", n=1).str[-1]
    return videos.assign(offset=(names.map(starts).to_numpy(np.int64) + videos["start"].to_numpy(np.int64)) if len(videos) else [])


def _write_frame_mapping(out: h5py.File, store_path: Path, segments: pd.DataFrame, dim_dtype: tuple) -> None:
    """The virtual datasets /features, /frame_index, /timestamps: the segments' datasets end to end."""
    dim, dtype = dim_dtype or (0, "float16")
    total = int(segments["rows"].sum())
    if not total:
        _create_frame_datasets(out, dim, dtype)
        return
    shapes = {"features": ((dim,), dtype), "frame_index": ((), np.int64), "timestamps": ((), np.float64)}
    for name, (tail, kind) in shapes.items():
        layout = h5py.VirtualLayout(shape=(total, *tail), dtype=kind)
        position = 0
        for segment, rows in zip(segments["name"], segments["rows"]):
            # relative to the index's folder, so the store and its segments can be moved together
            layout[position:position + rows] = h5py.VirtualSource(f"{segments_dir(store_path).name}/{segment}", name, shape=(rows, *tail))
            position += rows
        out.create_virtual_dataset(name, layout)


def _remove_unreferenced(store_path: Path, referenced: set) -> None:
    """Under the lock: segment files no index references (a killed merge's, or compacted away) and temporary files."""
    folder = segments_dir(store_path)
    for path in folder.glob("*") if folder.is_dir() else ():
        if path.name not in referenced:
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        store_path.with_name(store_path.name + ".index.tmp").unlink()


def _remove_dead_runs(store_path: Path) -> None:
    """Folders of runs that ended or died (their lock is free): half-written shards go; a live run's stay."""
    for folder in parts_dir(store_path).glob("run-*/"):
        lock = FileLock(f"{folder}.lock")
        try:
            lock.acquire(timeout=0)
        except Timeout:
            continue  # a live run
        try:
            for leftover in folder.glob("*.tmp"):
                leftover.unlink()
            with contextlib.suppress(OSError):
                folder.rmdir()
        finally:
            lock.release()
        if not folder.exists():
            with contextlib.suppress(OSError):
                Path(f"{folder}.lock").unlink()
    for orphan in parts_dir(store_path).glob("run-*.lock"):  # a run's lock without its folder: the run ended
        if not orphan.with_suffix("").exists() and not _run_is_live(orphan.with_suffix("")):
            with contextlib.suppress(OSError):
                orphan.unlink()
    with contextlib.suppress(OSError):
        parts_dir(store_path).rmdir()


def _migrate_v1(store_path: Path) -> None:
    """A version-1 store becomes the only segment of a new index: its frames stay where they are."""
    index = _Index.empty()
    with h5py.File(store_path, "r") as handle:
        index.attrs = {k: v for k, v in _decode_attrs(handle).items() if k != "schema_version"}
        videos = _read_table(handle, "videos", VIDEO_COLUMNS)
        failures = _read_table(handle, "failures", FAILURE_COLUMNS)
        rows, dim_dtype = handle["features"].shape[0], (handle["features"].shape[1], handle["features"].dtype.name)
    name = f"seg-{uuid.uuid4().hex}.h5"
    segments_dir(store_path).mkdir(exist_ok=True)
    os.link(store_path, segments_dir(store_path) / name)
    segments = pd.DataFrame({"name": [name], "rows": [rows]})
    _write_index(store_path, index.attrs, videos, failures, segments, dim_dtype)
    log.info("migrated %s to the layout of version %d (its frames are now segment %s)", store_path, SCHEMA_VERSION, name)


def _same(new: pd.DataFrame, old: pd.DataFrame) -> bool:
    """Whether a rebuilt table equals the stored one (then a no-op run writes nothing)."""
    return len(new) == len(old) and all((new[c].astype(str).to_numpy() == old[c].astype(str).to_numpy()).all() for c in old.columns)


def _fsync(path: Path) -> None:
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def _row_fields(row: VideoRow) -> dict:
    return {name: getattr(row, name) for name in VIDEO_TEXT}


def _concat(arrays: list[np.ndarray], empty_shape: tuple) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(empty_shape, np.float32)


def _create_frame_datasets(out: h5py.File, dim: int, dtype: str, rows: int | None = None) -> None:
    """Empty frame datasets; chunks of at most `rows` rows when the final count is known.

    HDF5 allocates whole chunks, so a one-video segment with 1024-row chunks would take 1024 rows
    on disk; sized to its rows, a segment's bytes follow its row count, which the garbage rule counts.
    """
    fit = max(1, rows) if rows is not None else 1 << 30
    chunk_rows = max(1, min(1024, fit, (1 << 20) // max(1, dim * np.dtype(dtype).itemsize)))
    out.create_dataset("features", (0, dim), dtype=dtype, maxshape=(None, dim), chunks=(chunk_rows, max(1, dim)))
    out.create_dataset("frame_index", (0,), dtype=np.int64, maxshape=(None,), chunks=(min(4096, fit),))
    out.create_dataset("timestamps", (0,), dtype=np.float64, maxshape=(None,), chunks=(min(4096, fit),))


def _append_frames(out: h5py.File, features: np.ndarray, frame_index: np.ndarray, timestamps: np.ndarray) -> int:
    """Append frame rows; return the offset of the first appended row."""
    start = out["features"].shape[0]
    for name, values in (("features", features), ("frame_index", frame_index), ("timestamps", timestamps)):
        dataset = out[name]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values.astype(dataset.dtype, copy=False)
    return start


def _write_attrs(out: h5py.File, attrs: dict) -> None:
    out.attrs["schema_version"] = SCHEMA_VERSION
    for name, value in attrs.items():
        if name != "schema_version":
            out.attrs[name] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def _write_table(out: h5py.File, name: str, table: pd.DataFrame, fitted: bool = False) -> None:
    """(Re)write a group of column datasets; string columns as UTF-8, numbers as int64/float64.

    Columns are chunked and extendable, so that a merge that only appends rows extends them. The
    tables of shards and segments are never extended: `fitted` sizes their chunks to their rows
    (a whole chunk is allocated, so a one-video shard would otherwise take 64 KB per column).
    """
    chunk = max(1, min(TABLE_CHUNK, len(table))) if fitted else TABLE_CHUNK
    if name in out:
        del out[name]
    group = out.create_group(name)
    for column in table.columns:
        values = _column_values(column, table[column])
        group.create_dataset(column, data=values, dtype=TEXT if values.dtype == object else values.dtype,
                             maxshape=(None,), chunks=(chunk,))


def _column_values(column: str, values: pd.Series) -> np.ndarray:
    """A table column as HDF5 takes it: int64, float64, or str objects (written as UTF-8)."""
    if column in (*VIDEO_INTS, "order", "rows"):
        return values.to_numpy(np.int64)
    if column in VIDEO_FLOATS:
        return values.to_numpy(np.float64)
    return values.to_numpy().astype(str).astype(object)


def _read_table(handle: h5py.File, name: str, columns) -> pd.DataFrame:
    group = handle[name]
    return pd.DataFrame({c: group[c].asstr()[:] if group[c].dtype.kind == "O" else group[c][:] for c in columns})


def _read_text(handle: h5py.File, name: str, column: str) -> list[str]:
    return list(handle[name][column].asstr()[:]) if name in handle else []
