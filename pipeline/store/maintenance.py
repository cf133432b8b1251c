"""Work on a whole store on demand: compaction, migration of the version-1 layout, recovery of a broken index."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.store.index import Index, decode_attrs, load_index, read_attrs, refuse_foreign, schema_version
from pipeline.store.layout import (
    FAILURE_COLUMNS,
    FRAME_COLUMNS,
    SCHEMA_VERSION,
    VIDEO_COLUMNS,
    VIDEO_FLOATS,
    VIDEO_INTS,
    VIDEO_TEXT,
    StoreError,
    segments_dir,
)
from pipeline.store.locks import store_lock
from pipeline.store.segments import compact_frames, remove_unreferenced, stored_frames, with_offsets, write_index
from pipeline.store.status import missing_segments
from pipeline.store.sync import sync_videos
from pipeline.store.tables import read_table

log = logging.getLogger(__name__)


def compact(store_path: str | Path, lock_timeout: float = 600.0) -> dict:
    """Rewrite the live frames into one segment and drop every other; migrate a version-1 store.

    Returns {frames_before, frames_after, segments_before}. A version-1 store (one file holding
    everything) becomes the single segment of a new index first, without copying.
    """
    store_path = Path(store_path)
    refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    with store_lock(store_path, lock_timeout):
        if schema_version(store_path) == 1:
            _migrate_v1(store_path)
        index = load_index(store_path)
        manifest = index.videos[list(VIDEO_TEXT)].assign(order=np.arange(len(index.videos)))
        videos = sync_videos(manifest, stored_frames(store_path, index))
        before = {"frames_before": int(index.segments["rows"].sum()), "segments_before": len(index.segments)}
        videos, segments = compact_frames(store_path, videos, index.dim_dtype)
        videos = with_offsets(videos, segments)
        write_index(store_path, index.attrs, videos, index.failures, segments, index.dim_dtype)
        remove_unreferenced(store_path, set(segments["name"]))
    return {**before, "frames_after": int(segments["rows"].sum())}


def recover(store_path: str | Path, lock_timeout: float = 600.0) -> dict:
    """Rebuild a store whose index is unreadable from its readable segments; name the lost ones.

    The new index holds every video of every readable segment, and no manifest hash: the next
    `features` run syncs it with the manifest and re-extracts only what was lost. The broken index
    is kept as `<store>.h5.broken` for inspection.
    """
    store_path = Path(store_path)
    refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    if not segments_dir(store_path).is_dir():
        raise StoreError(f"nothing to recover for {store_path}: it has no {segments_dir(store_path).name}/ folder")
    with store_lock(store_path, lock_timeout):
        readable, lost, tables = [], [], []
        with contextlib.suppress(OSError, StoreError, KeyError):  # an unreadable index names none
            lost += [f"{name} (referenced by the index, but the file is gone)" for name in missing_segments(store_path)]
        for segment in sorted(segments_dir(store_path).glob("*.h5"), key=lambda p: p.stat().st_mtime_ns):
            try:
                with h5py.File(segment, "r") as handle:
                    table = read_table(handle, "videos", (*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS))
                    readable.append(
                        (
                            segment.name,
                            handle["features"].shape[0],
                            (handle["features"].shape[1], handle["features"].dtype.name),
                        )
                    )
                    tables.append(table.assign(file=segment.name, start=table["offset"]))
            except (OSError, KeyError) as error:
                lost.append(f"{segment.name} ({error})")
        if not readable:
            raise StoreError(
                f"nothing readable to recover in {segments_dir(store_path)}; move {store_path} and its "
                f"folders aside and rerun `python -m pipeline features`"
            )
        attrs = {}
        with contextlib.suppress(OSError, StoreError, KeyError):
            attrs = {
                k: v
                for k, v in read_attrs(store_path).items()
                if k not in ("manifest_sha256", "last_sync", "synced_rows", "synced_digest")
            }
        if store_path.exists():
            os.replace(store_path, f"{store_path}.broken")
        segments = pd.DataFrame({"name": [r[0] for r in readable], "rows": [r[1] for r in readable]})
        frames = pd.concat(tables, ignore_index=True).drop_duplicates("key", keep="last")
        videos = sync_videos(frames.assign(order=np.arange(len(frames)))[[*VIDEO_TEXT, "order"]], frames[FRAME_COLUMNS])
        attrs["last_sync"] = {"recovered": True}
        videos = with_offsets(videos, segments)
        write_index(store_path, attrs, videos, pd.DataFrame(columns=FAILURE_COLUMNS), segments, readable[0][2])
    return {"videos": len(videos), "segments": len(readable), "lost_segments": lost}


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
    segments = pd.DataFrame({"name": [name], "rows": [rows]})
    write_index(store_path, index.attrs, videos, failures, segments, dim_dtype)
    log.info(
        "migrated %s to the layout of version %d (its frames are now segment %s)", store_path, SCHEMA_VERSION, name
    )
