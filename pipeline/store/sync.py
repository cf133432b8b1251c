"""Merging shards into the store and syncing its tables with the manifest (see the package docstring)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import pipeline.store.grace as grace
from pipeline.store.growth import grown_from as _grown_from  # looked up per call: tests replace it
from pipeline.store.index import Index, check_owner_attrs, load_index, refuse_foreign
from pipeline.store.integrity import require_intact, segment_row
from pipeline.store.layout import (
    CHANGE_LIST,
    FAILURE_COLUMNS,
    FRAME_COLUMNS,
    GARBAGE_SHARE,
    MAX_SEGMENTS,
    VIDEO_TEXT,
    VideoRow,
)
from pipeline.store.locks import store_lock
from pipeline.store.segments import (
    append_index,
    compact_frames,
    live_rows,
    new_segment,
    remove_unreferenced,
    stored_frames,
    with_offsets,
    write_index,
)
from pipeline.store.shards import complete_shards, foreign_shards, remove_dead_runs, shard_tables
from pipeline.store.status import write_failures_csv

log = logging.getLogger(__name__)


@dataclass
class SyncReport:
    """What a merge left in the store for its manifest, and what it changed."""

    stored: int = 0  # manifest rows in the video table
    failed: int = 0  # manifest rows in the failure table
    changes: dict = field(default_factory=dict)  # relabelled, moved, regrouped, retired, replaced: counts
    compacted: bool = False


def merge_shards(
    store_path: str | Path,
    attrs: dict,
    rows: list[VideoRow],
    missing: list[dict] = (),
    *,
    dim_dtype: tuple | None = None,
    lock_timeout: float = 600.0,
    on_step=None,
    own_run: Path | None = None,
) -> SyncReport:
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
    refuse_foreign(store_path)  # before the lock: no .lock file beside someone else's file
    with store_lock(store_path, lock_timeout):
        index = load_index(store_path, ("offset", "length")) if store_path.exists() else Index.empty()
        check_owner_attrs(store_path, index.attrs, attrs)
        require_intact(store_path, index.segments)  # before anything is written: the shards stay for after a recovery
        remove_unreferenced(store_path, set(index.segments["name"]))
        shards = complete_shards(store_path)
        foreign = foreign_shards(shards, rows, own_run)
        committed = [
            s for s in shards if s.name in set(index.segments["name"])
        ]  # merged by a merge killed before cleanup
        fresh = [s for s in shards if s not in committed]
        merged = _merge_tables(store_path, index, rows, fresh, foreign, missing, dim_dtype, step)
        record = {
            **index.attrs,
            **{k: v for k, v in attrs.items() if v is not None},
            "synced_rows": len(rows),
            "synced_digest": merged.digest,
        }
        record["last_sync"] = {"time": datetime.now(timezone.utc).isoformat(timespec="seconds"), **merged.changes}
        if fresh or merged.compacted or not _unchanged(index, merged, record):
            tables = (merged.videos, merged.failures, merged.segments, merged.dim_dtype, step)
            if merged.appending:  # the retired table stands as it is
                append_index(store_path, record, *tables)
            else:
                write_index(store_path, record, *tables, retired=merged.retired)
        step("index_swapped")
        for shard in committed + fresh:
            if shard not in foreign:
                shard.unlink()
        remove_unreferenced(store_path, set(merged.segments["name"]))
        remove_dead_runs(store_path)
        write_failures_csv(store_path)
    stored_count = len(merged.videos) + (len(index.videos) if merged.appending else 0)
    report = SyncReport(
        stored_count, len(merged.failures), {k: v["count"] for k, v in merged.changes.items()}, merged.compacted
    )
    if any(report.changes.values()):
        log.info("synced with the manifest: %s", ", ".join(f"{n} {k}" for k, n in report.changes.items() if n))
    if report.changes.get("retired"):
        log.info(
            "the frames of retired videos are kept for %g days: a manifest that lists them again re-extracts nothing "
            "(`python -m pipeline compact %s` reclaims them now)",
            grace.keep_days(),
            store_path,
        )
    if merged.restored:
        log.info("%d videos that had left the manifest are back, from their kept frames", merged.restored)
    return report


@dataclass
class _Merged:
    """The tables a merge writes. When `appending`, `videos` holds only the rows appended after the synced ones."""

    videos: pd.DataFrame
    failures: pd.DataFrame
    segments: pd.DataFrame
    changes: dict
    compacted: bool
    appending: bool
    digest: str
    dim_dtype: tuple | None
    retired: pd.DataFrame  # the retired table (see `grace`), with global offsets
    restored: int = 0  # videos listed again whose frames the retired table kept


def _merge_tables(
    store_path: Path,
    index: Index,
    rows: list[VideoRow],
    fresh: list[Path],
    foreign: set[Path],
    missing,
    dim_dtype: tuple | None,
    step,
) -> _Merged:
    """The new tables: the fresh shards' frames as a new segment, and the video and failure tables
    synced with `rows`."""
    new, new_failures, shard_dim_dtype = shard_tables(fresh)
    dim_dtype = index.dim_dtype or shard_dim_dtype or dim_dtype
    synced, digest = _grown_from(index, rows, new, new_failures)
    appending = synced is not None
    if not appending:  # anything but rows appended: rebuild the tables from the whole manifest
        index.videos = load_index(store_path).videos if store_path.exists() else index.videos
        columns = [*VIDEO_TEXT, *FRAME_COLUMNS[1:]]
        before = pd.concat(
            [
                stored_frames(store_path, index, columns=columns),
                stored_frames(store_path, index, index.retired, columns),
            ],
            ignore_index=True,
        )  # every key with frames: the videos', and those retired within the grace period
        synced, kept, stored = 0, index.failures.iloc[:0], before[FRAME_COLUMNS]
    else:  # the synced rows stand as they are: sync only the rows after them
        kept, stored = index.failures[index.failures["stage"] != "missing"], pd.DataFrame(columns=FRAME_COLUMNS)
    manifest = pd.DataFrame(
        {
            name: pd.Series(
                [getattr(row, name) for row in rows[synced:]], dtype=np.int64 if name == "order" else object
            )
            for name in (*VIDEO_TEXT, "order")
        }
    )
    new = new[new["key"].isin(set(manifest["key"])) & ~new["key"].isin(set(stored["key"]))].drop_duplicates("key")
    segments = index.segments
    if len(new):
        name, rows_count, new = new_segment(store_path, new, dim_dtype, link=foreign.isdisjoint(map(Path, new["file"])))
        segments = pd.concat([segments, pd.DataFrame([segment_row(store_path, name, rows_count)])], ignore_index=True)
    frames = pd.concat([stored, new[stored.columns]], ignore_index=True)
    step("segment_written")
    videos = sync_videos(manifest, frames)
    failures = pd.concat(
        [kept, _sync_failures(manifest, videos, index.failures, new_failures, missing)], ignore_index=True
    )
    changes = _changes(videos.iloc[:0] if appending else index.videos, videos)
    retired = index.retired if appending else grace.retire(before, index.retired, videos)
    live = videos.drop_duplicates(["file", "start"])["length"].sum() + (live_rows(index.videos) if appending else 0)
    live += grace.kept_rows(retired)
    total = int(segments["rows"].sum())
    compact = total > 0 and ((total - live) / total > GARBAGE_SHARE or len(segments) > MAX_SEGMENTS)
    if compact:  # never when appending: grown_from leaves those merges to the full rebuild
        videos, retired, segments = compact_frames(store_path, videos, dim_dtype, retired)
        step("compacted")
    if not appending:
        retired = with_offsets(retired, segments)
    restored = int(videos["key"].isin(set(index.retired["key"])).sum())
    return _Merged(
        with_offsets(videos, segments),
        failures,
        segments,
        changes,
        compact,
        appending,
        digest,
        dim_dtype,
        retired,
        restored,
    )


def _unchanged(index: Index, merged: _Merged, record: dict) -> bool:
    """Whether the merge would write the index as it is (a no-op run then writes nothing)."""
    stale_report = any(isinstance(v, dict) and v.get("count") for v in index.attrs.get("last_sync", {}).values())
    return (
        not stale_report
        and _same(merged.failures, index.failures)
        and (not len(merged.videos) if merged.appending else _same(merged.videos, index.videos))
        and _same(merged.retired[["key", "offset", "retired_at"]], index.retired[["key", "offset", "retired_at"]])
        and all(
            index.attrs.get(k) == record.get(k)
            for k in ("manifest", "manifest_sha256", "config_hash", "synced_rows", "synced_digest")
        )
    )


def sync_videos(manifest: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """The video table: manifest rows (in order) whose key has frames, with those frames' location."""
    frames = frames.drop_duplicates("key").astype({"key": object})  # an empty one has no string type
    joined = manifest.merge(frames, on="key", how="inner").sort_values("order", kind="stable")
    return joined.drop(columns="order").reset_index(drop=True)


def _sync_failures(
    manifest: pd.DataFrame, videos: pd.DataFrame, old: pd.DataFrame, new: pd.DataFrame, missing
) -> pd.DataFrame:
    """Failure rows of manifest videos not stored: this run's failure of their key, else an earlier one."""
    outcome = (
        pd.concat([old, new[list(FAILURE_COLUMNS)]], ignore_index=True)
        .drop_duplicates("key", keep="last")
        .astype({"key": object})
    )
    pending = manifest[~manifest["key"].isin(set(videos["key"]))]
    failed = pending.merge(outcome[["key", "stage", "error", "message"]], on="key", how="inner").sort_values(
        "order", kind="stable"
    )
    gone = pd.DataFrame(
        [
            {
                **row,
                "stage": "missing",
                "error": "FileNotFoundError",
                "message": "file not found; --skip-missing left it out (fix the path or remove the row)",
            }
            for row in missing
        ],
        columns=FAILURE_COLUMNS,
    )
    return pd.concat([failed[list(FAILURE_COLUMNS)], gone], ignore_index=True)


def _changes(old: pd.DataFrame, new: pd.DataFrame) -> dict:
    """What a sync changed, by video id: relabelled, moved (split), regrouped, retired (left),
    replaced (file changed)."""
    both = old.merge(new, on="video_id", suffixes=("_old", ""))
    found = {
        "relabelled": both.loc[both["label_old"] != both["label"], ["video_id", "label_old", "label"]],
        "moved": both.loc[both["split_old"] != both["split"], ["video_id", "split_old", "split"]],
        "regrouped": both.loc[both["group_old"] != both["group"], ["video_id", "group_old", "group"]],
        "replaced": both.loc[both["key_old"] != both["key"], ["video_id"]],
        "retired": old.loc[~old["video_id"].isin(set(new["video_id"])), ["video_id"]],
    }
    return {
        kind: {
            "count": len(rows),
            "ids": [
                " -> ".join(map(str, values)) if len(values) > 1 else values[0]
                for values in rows.head(CHANGE_LIST).itertuples(index=False)
            ],
        }
        for kind, rows in found.items()
    }


def _same(new: pd.DataFrame, old: pd.DataFrame) -> bool:
    """Whether a rebuilt table equals the stored one (then a no-op run writes nothing)."""
    return len(new) == len(old) and all(
        (new[c].astype(str).to_numpy() == old[c].astype(str).to_numpy()).all() for c in old.columns
    )
