"""What a store's users are told: whether it may be used, how to sync it, and its summary."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import pandas as pd

import pipeline.store.grace as grace
from pipeline.core.atomic import replacing
from pipeline.core.hashing import file_sha256  # backbones imports TensorFlow only inside functions
from pipeline.store.index import (
    check_owner_attrs,
    index_segments,
    open_index,
    read_attrs,
    read_failures,
    read_videos,
    refuse_foreign,
)
from pipeline.store.integrity import require_intact, segment_problems
from pipeline.store.layout import CHANGE_KINDS, RETIRED_COLUMNS, SEGMENT_COLUMNS, StoreError, segments_dir
from pipeline.store.readers import ReaderLock
from pipeline.store.tables import read_table

log = logging.getLogger(__name__)


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
            raise StoreError(
                f"the manifest {manifest} changed since the feature store {store_path} was last synced with it "
                f"(labels, splits or rows may differ). Sync it (nothing is re-extracted): "
                f"{sync_command(store_path, attrs)}"
            )
    elif attrs.get("last_sync", {}).get("recovered"):
        raise StoreError(
            f"the feature store {store_path} was recovered and not synced with its manifest yet: "
            f"{sync_command(store_path, attrs)} (with the options it was made with)"
        )
    require_segments(store_path)


def missing_segments(store_path: str | Path) -> list[str]:
    """Segment files the index references that do not exist (one stat each): plain h5py would read their frames as
    zeros."""
    return [
        name for name in index_segments(Path(store_path))["name"] if not (segments_dir(store_path) / name).is_file()
    ]


def require_segments(store_path: str | Path) -> None:
    """Refuse a store whose index references a segment file that is gone (copied without its folder, or deleted),
    truncated or changed since it was merged (see `integrity`): exit 2, naming the files and the recovery.

    Registered as a reader meanwhile, so that a concurrent compaction cannot delete a segment between
    reading the index and looking at the files (which would name a segment that is not missing).
    """
    with _reading(store_path):
        require_intact(store_path, index_segments(Path(store_path)))


def _reading(store_path: str | Path) -> ReaderLock:
    refuse_foreign(store_path)  # no .readers file beside someone else's file
    return ReaderLock(store_path)


def check_owner(store_path: str | Path, attrs: dict) -> None:
    """Refuse, before any work, a store that belongs to another manifest or feature config."""
    if Path(store_path).exists():
        check_owner_attrs(Path(store_path), read_attrs(store_path), attrs)


def sync_command(store_path: str | Path, attrs: dict) -> str:
    """The `features` command line that syncs this store with its manifest (same feature config)."""
    config = attrs.get("feature_config", {})
    weights = attrs.get("weights_path") or config.get("weights", "imagenet")
    options = [
        f"--{name.replace('_', '-')} {config[name]}"
        for name in ("backbone", "image_size", "crop", "sampling", "max_frames", "dtype", "precision", "pooling")
        if name in config
    ]
    return (
        f"python -m pipeline features --manifest {attrs.get('manifest', 'MANIFEST')} --store {store_path} "
        f"--weights {weights} {' '.join(options)}"
    )


def write_failures_csv(store_path: str | Path) -> Path:
    """`<store>.failures.csv`: the failure table beside the store, for people and spreadsheets."""
    target = Path(f"{Path(store_path).with_suffix('')}.failures.csv")
    with replacing(target, target.with_suffix(".csv.tmp")) as temporary:
        read_failures(store_path).drop(columns=["key"]).to_csv(temporary, index=False)
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
    with _reading(store_path), open_index(store_path) as handle:
        dim, rows = handle["features"].shape[1], handle["features"].shape[0]
        segments = read_table(handle, "segments", SEGMENT_COLUMNS)
        retired = read_table(handle, "retired", RETIRED_COLUMNS)
        problems = segment_problems(store_path, segments)
        folder = segments_dir(store_path)
        stale = len({p.name for p in folder.glob("*.h5")} - set(segments["name"])) if folder.is_dir() else 0
    lengths = videos["length"] if len(videos) else pd.Series([0])
    lines.append(
        f"videos: {len(videos)}  frames: {int(videos['length'].sum())}  feature dim: {dim}  "
        f"frames per video: min {lengths.min()} mean {lengths.mean():.1f} max {lengths.max()}"
    )
    kept = int(retired.drop_duplicates("offset")["length"].sum())
    lines.append(
        f"segments: {len(segments)}  stored frame rows: {rows} "
        f"({rows - int(videos.drop_duplicates('offset')['length'].sum()) - kept} unreferenced"
        + (f", {kept} kept for {len(retired)} retired videos" if len(retired) else "")
        + f"; `python -m pipeline compact {store_path}` reclaims them)"
    )
    if len(retired):
        until = datetime.fromtimestamp(retired["retired_at"].min() + grace.KEEP_S).isoformat(" ", "minutes")
        lines.append(
            f"retired: {len(retired)} videos no manifest row lists any more keep their frames for "
            f"{grace.keep_days():g} days (the first until {until}): a manifest that lists them again costs nothing"
        )
    lines += [
        f"  {'MISSING' if problem == 'missing' else 'DAMAGED'} segment file {segments_dir(store_path) / name} "
        f"({'its frames read as zeros' if problem == 'missing' else problem})"
        for name, problem in problems
    ]
    if stale:
        lines.append(
            f"  {stale} segment file(s) in {segments_dir(store_path).name}/ the index no longer references: kept while "
            f"a reader may read them (`train --data stream`); the next merge or `compact` after it deletes them"
        )
    sync = attrs.get("last_sync", {})
    kinds = [kind for kind in CHANGE_KINDS if sync.get(kind, {}).get("count")]
    lines.append(
        f"last run ({sync.get('time', '?')}): "
        + (", ".join(f"{sync[k]['count']} {k}" for k in kinds) if kinds else "no metadata changes")
    )
    for kind in kinds:
        lines += [f"  {kind}: {item}" for item in sync[kind]["ids"][:20]]
    if len(videos):
        counts = pd.crosstab(videos["label"], videos["split"].replace("", "(none)"), margins=True, margins_name="total")
        lines += ["videos per label and split:", *("  " + line for line in counts.to_string().splitlines())]
    lines.append(f"failures: {len(failures)}")
    lines += [f"  {row.path}: [{row.stage}] {row.message}" for row in failures.itertuples()]
    return "\n".join(lines)
