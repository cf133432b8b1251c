"""The HDF5 feature store: the contract between stage one (features) and stage two (train).

A store is a small index file plus immutable segment files beside it:

    <store>.h5              the index, what readers open (plain HDF5, readable with h5py alone):
      /                     attrs: schema_version, feature_config (JSON), config_hash, versions (JSON),
                            manifest, manifest_sha256, last_sync (JSON: what the last run changed)
      /videos/<col>         one entry per manifest video that is stored, in manifest order: video_id,
                            key, path, label, split, group, content (strings); total_frames, width,
                            height, offset, length (ints); fps (float). Rows offset .. offset+length of
                            the frame datasets belong to that video. `content` identifies the file's
                            bytes whatever its path (splits keep copies together); "" in older stores.
      /features             (frames, D) virtual dataset over the segments' frames, so that
      /frame_index          `f["features"][a:b]` reads like one dataset
      /timestamps
      /failures/<col>       one entry per manifest video that failed: video_id, key, path, stage, error, message
      /segments/<col>       name, rows, bytes, digest: the segment files the virtual datasets concatenate, in
                            order, with the size and sampled sha256 each had when merged (checked at open)
      /retired/<col>        the video table's columns and retired_at: keys that left the manifest, their
                            frames kept for a grace period (`grace`)
    <store>.h5.segments/    seg-<hex>.h5: frames (and their own video table) of finished videos, never modified
    <store>.h5.parts/run-<hex>/ shard files of a run in progress; `run-<hex>.lock` is held while it lives
    <store>.h5.readers      shared-locked by readers of frames (`readers`): segments stay while one is held

Adding k videos costs O(k): a run writes shard files; the merge hard-links them into the segment
folder (several shards of one merge are first copied into one segment, O(k) bytes) and writes a new
index (tables and the virtual-dataset mapping, a few MB for 50,000 videos) under a temporary name,
renamed over the old one. When the manifest only grew at its end (its first rows hash as the ones
last synced), the new index is a byte copy of the old one with the new rows appended to its
video table, so the existing rows are neither read nor converted. Nothing else is rewritten. A merge killed at any
moment leaves the old
index valid; links it made that no index references are deleted by the next merge, which takes the
shards again. Frames nothing references (re-extracted or duplicated videos, retired ones past their
grace period) are garbage; a merge that would leave more than GARBAGE_SHARE of the frames as
garbage, or more than MAX_SEGMENTS segments, compacts: it copies the live frames (and those of
retired videos in their grace period) into one new segment (`compact` does it on demand, and
reclaims the retired ones too).

The manifest is the truth for metadata: each merge rebuilds the video table from the manifest rows
(label, split, group, order) and the frames stored per key, so relabelled or moved rows take effect
without re-extracting, and rows that left the manifest leave the table.

Modules: `layout` (schema constants, row types, file locations), `tables` (HDF5 column I/O), `index`
(opening and reading the index), `integrity` (segment sizes and digests), `readers` (reader
registration), `grace` (retired videos), `status` (checks, sync command, summary), `locks`, `shards`,
`segments` (segments and index writing), `growth` (when a merge only appends), `sync`
(`merge_shards`), `maintenance` (`compact`, `recover`), `find` (`find_store`: the store a file, folder or
manifest names). `pipeline.store` re-exports the public names below.
"""

from pipeline.store.find import find_store, remove_stores, stores_in
from pipeline.store.index import read_attrs, read_failures, read_videos, stored_keys
from pipeline.store.layout import (
    FAILURE_COLUMNS,
    FRAME_DATASETS,
    GARBAGE_SHARE,
    MAX_SEGMENTS,
    SCHEMA_VERSION,
    TRANSIENT_STAGES,
    VIDEO_COLUMNS,
    VIDEO_FLOATS,
    VIDEO_INTS,
    VIDEO_TEXT,
    StoreError,
    VideoRow,
    parts_dir,
    resolved_video_key,
    segments_dir,
    video_key,
)
from pipeline.store.locks import store_lock
from pipeline.store.maintenance import compact, recover
from pipeline.store.readers import ReaderLock
from pipeline.store.shards import Shard, shard_keys, shard_run, write_shard
from pipeline.store.status import (
    check_owner,
    missing_segments,
    require_in_sync,
    require_segments,
    summary,
    sync_command,
    write_failures_csv,
)
from pipeline.store.sync import SyncReport, merge_shards

__all__ = [
    "FAILURE_COLUMNS",
    "FRAME_DATASETS",
    "GARBAGE_SHARE",
    "MAX_SEGMENTS",
    "ReaderLock",
    "SCHEMA_VERSION",
    "TRANSIENT_STAGES",
    "VIDEO_COLUMNS",
    "VIDEO_FLOATS",
    "VIDEO_INTS",
    "VIDEO_TEXT",
    "Shard",
    "StoreError",
    "SyncReport",
    "VideoRow",
    "check_owner",
    "compact",
    "find_store",
    "merge_shards",
    "missing_segments",
    "parts_dir",
    "read_attrs",
    "read_failures",
    "read_videos",
    "recover",
    "remove_stores",
    "require_in_sync",
    "require_segments",
    "resolved_video_key",
    "segments_dir",
    "shard_keys",
    "shard_run",
    "store_lock",
    "stores_in",
    "stored_keys",
    "summary",
    "sync_command",
    "video_key",
    "write_failures_csv",
    "write_shard",
]
