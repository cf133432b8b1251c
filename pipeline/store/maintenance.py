"""Work on a whole store on demand: compaction, migration of the version-1 layout, recovery of a broken index."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.store.index import Index, decode_attrs, load_index, refuse_foreign, schema_version
from pipeline.store.integrity import require_intact, segment_problems, segment_row
from pipeline.store.layout import (
    FAILURE_COLUMNS,
    FRAME_COLUMNS,
    SCHEMA_VERSION,
    SEGMENT_COLUMNS,
    VIDEO_COLUMNS,
    VIDEO_FLOATS,
    VIDEO_INTS,
    VIDEO_TEXT,
    StoreError,
    segments_dir,
)
from pipeline.store.locks import store_lock
from pipeline.store.segments import compact_frames, remove_unreferenced, stored_frames, with_offsets, write_index
from pipeline.store.sync import sync_videos
from pipeline.store.tables import read_table

log = logging.getLogger(__name__)


def compact(store_path: str | Path, lock_timeout: float = 600.0) -> dict:
    """Rewrite the live frames into one segment and drop every other; migrate a version-1 store.

    Returns {frames_before, frames_after, segments_before, retired_reclaimed}. The frames of
    retired videos kept for their grace period (see `grace`) are reclaimed too: this is how to
    reclaim them sooner. A version-1 store (one file holding everything) becomes the single
    segment of a new index first, without copying. Segments a reader still uses are deleted later
    (see `readers`).
    """
    store_path = Path(store_path)
    refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    with store_lock(store_path, lock_timeout):
        if schema_version(store_path) == 1:
            _migrate_v1(store_path)
        index = load_index(store_path)
        require_intact(store_path, index.segments)  # their frames are about to be copied
        manifest = index.videos[list(VIDEO_TEXT)].assign(order=np.arange(len(index.videos)))
        videos = sync_videos(manifest, stored_frames(store_path, index))
        before = {
            "frames_before": int(index.segments["rows"].sum()),
            "segments_before": len(index.segments),
            "retired_reclaimed": len(index.retired),
        }
        videos, _, segments = compact_frames(store_path, videos, index.dim_dtype or (0, "float16"), videos.iloc[:0])
        videos = with_offsets(videos, segments)
        write_index(store_path, index.attrs, videos, index.failures, segments, index.dim_dtype)
        remove_unreferenced(store_path, set(segments["name"]))
    return {**before, "frames_after": int(segments["rows"].sum())}


def recover(store_path: str | Path, lock_timeout: float = 600.0) -> dict:
    """Rebuild a store whose index is unreadable, or names missing or damaged segments, from its intact segments.

    The new index holds every video of every intact segment (none, if none is: an empty store),
    and no manifest hash: the next `features` run syncs it with the manifest and re-extracts only
    what was lost. A segment is intact if it opens and, where the old index is readable and
    recorded its size and digest, matches them. The old index is kept as `<store>.h5.broken`.
    Returns {videos, segments, lost_segments}: the lost ones named, each with its reason.
    """
    store_path = Path(store_path)
    refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    if not segments_dir(store_path).is_dir():
        raise StoreError(f"nothing to recover for {store_path}: it has no {segments_dir(store_path).name}/ folder")
    with store_lock(store_path, lock_timeout):
        attrs, old = _readable_index(store_path)
        damaged = dict(segment_problems(store_path, old.segments))
        lost = [
            f"{name} (referenced by the index, but the file is "
            + ("gone)" if problem == "missing" else f"damaged: {problem})")
            for name, problem in damaged.items()
        ]
        readable, tables = [], []
        for segment in sorted(segments_dir(store_path).glob("*.h5"), key=lambda p: p.stat().st_mtime_ns):
            if segment.name in damaged:
                continue
            try:
                with h5py.File(segment, "r") as handle:
                    table = read_table(handle, "videos", (*VIDEO_TEXT, "content", *VIDEO_INTS, *VIDEO_FLOATS))
                    features = handle["features"]
                    readable.append((segment.name, features.shape[0], (features.shape[1], features.dtype.name)))
                tables.append(table.assign(file=segment.name, start=table["offset"]))
            except (OSError, KeyError) as error:
                lost.append(f"{segment.name} ({error})")
        if store_path.exists():  # kept, while the index stays in place until the new one replaces it (kill -9 safe)
            broken = Path(f"{store_path}.broken")
            broken.unlink(missing_ok=True)
            try:
                os.link(store_path, broken)
            except OSError:  # a filesystem without hard links
                shutil.copyfile(store_path, broken)
        segments = pd.DataFrame(
            [segment_row(store_path, name, rows) for name, rows, _ in readable], columns=old.segments.columns
        )
        frames = pd.concat([pd.DataFrame(columns=[*VIDEO_TEXT, *FRAME_COLUMNS[1:]]), *tables], ignore_index=True)
        frames = frames.drop_duplicates("key", keep="last")
        videos = sync_videos(frames.assign(order=np.arange(len(frames)))[[*VIDEO_TEXT, "order"]], frames[FRAME_COLUMNS])
        attrs["last_sync"] = {"recovered": True}
        videos = with_offsets(videos, segments)
        dim_dtype = readable[0][2] if readable else old.dim_dtype
        write_index(store_path, attrs, videos, pd.DataFrame(columns=FAILURE_COLUMNS), segments, dim_dtype)
    return {"videos": len(videos), "segments": len(readable), "lost_segments": lost}


def _readable_index(store_path: Path) -> tuple[dict, Index]:
    """What recovery keeps of the old index: its attributes (less the sync record and any damaged JSON one), its
    segment table and frame shape; nothing of what cannot be read."""
    attrs, index = {}, Index.empty()
    with contextlib.suppress(OSError, KeyError, ValueError):
        with h5py.File(store_path, "r") as handle:
            attrs = decode_attrs(handle, lenient=True)
            index.segments = read_table(handle, "segments", SEGMENT_COLUMNS)
            features = handle["features"]
            index.dim_dtype = (features.shape[1], features.dtype.name) if features.shape[1] else None
    dropped = ("schema_version", "manifest_sha256", "last_sync", "synced_rows", "synced_digest")
    return {k: v for k, v in attrs.items() if k not in dropped}, index


def _migrate_v1(store_path: Path) -> None:
    """A version-1 store becomes the only segment of a new index: its frames stay where they are."""
    index = Index.empty()
    with h5py.File(store_path, "r") as handle:
        index.attrs = {k: v for k, v in decode_attrs(handle).items() if k != "schema_version"}
        videos = read_table(handle, "videos", VIDEO_COLUMNS)
        failures = read_table(handle, "failures", FAILURE_COLUMNS)
        rows, dim_dtype = handle["features"].shape[0], (handle["features"].shape[1], handle["features"].dtype.name)
    name = f"seg-{uuid.uuid4().hex}.h5"
    segments_dir(store_path).mkdir(exist_ok=True)
    os.link(store_path, segments_dir(store_path) / name)
    segments = pd.DataFrame([segment_row(store_path, name, rows)])
    write_index(store_path, index.attrs, videos, failures, segments, dim_dtype)
    log.info(
        "migrated %s to the layout of version %d (its frames are now segment %s)", store_path, SCHEMA_VERSION, name
    )
