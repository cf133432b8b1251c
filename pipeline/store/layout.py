"""What a store is made of: its schema constants, the row types, and where its files live.

See the package docstring for the layout of the index file and its folders.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import PipelineError
from pipeline.core.hashing import sampled_sha256

SCHEMA_VERSION = 2
STORES_DIR = "features"  # root folder of the stores: <root>/<manifest name>/<store>.h5
VIDEO_TEXT = ("video_id", "key", "path", "label", "split", "group")
VIDEO_INTS = ("total_frames", "width", "height", "offset", "length")
VIDEO_FLOATS = ("fps",)
VIDEO_COLUMNS = (*VIDEO_TEXT, *VIDEO_INTS, *VIDEO_FLOATS, "content")
FAILURE_COLUMNS = ("video_id", "key", "path", "stage", "error", "message")
FRAME_DATASETS = ("features", "frame_index", "timestamps")
APPEND_ROWS = 8192  # frames buffered per write while copying: bounds memory on large merges
GARBAGE_SHARE = (
    0.5  # compact when more than this share of the stored frames is unreferenced (disk <= 2x the live frames)
)
MAX_SEGMENTS = 256  # compact past this many segments: a reader of the whole store opens every segment file
TRANSIENT_STAGES = (
    "lost",
    "killed",
)  # failures that need not be the file's fault (lost dask task, OOM kill): retried by every run
CHANGE_LIST = 1000  # ids listed per kind of change in last_sync (the counts are always complete)
FRAME_COLUMNS = [
    "key",
    "content",
    "total_frames",
    "width",
    "height",
    "fps",
    "length",
    "file",
    "start",
]  # a key's frames
RETIRED_COLUMNS = (*VIDEO_COLUMNS, "retired_at")  # a video table row as it was last stored, and when it left
SEGMENT_COLUMNS = ("name", "rows", "bytes", "digest")  # bytes and digest: what the segment file was when merged
# Columns later versions added, and what a store written before them reads as: such stores keep working.
# content "" groups a video by its key alone; bytes -1 and digest "" mean "not recorded" (the file is opened instead).
OPTIONAL_COLUMNS = {"content": "", "bytes": -1, "digest": ""}
CONTENT_BLOCK = 1 << 20  # bytes per sampled block of a video's content identity (3 blocks at most are read)
SEGMENT_BLOCK = 1 << 16  # bytes per sampled block of a segment's digest, checked whenever a command opens the store
CHANGE_KINDS = ("relabelled", "moved", "regrouped", "retired", "replaced")
ROW_TEXT, ROW_KEY = operator.attrgetter(*VIDEO_TEXT), operator.attrgetter("key")
INTS, FLOATS = (*VIDEO_INTS, "order", "rows", "bytes"), (*VIDEO_FLOATS, "retired_at")  # table columns by type


POOLINGS = ("avg", "grid2", "grid3")  # global average, or averages over a 2x2 / 3x3 grid of the last feature map


def grid_side(pooling: str) -> int:
    """The side of a pooling's grid of cells (see POOLINGS): 3 for grid3, 1 for avg (one cell, the whole map)."""
    return int(pooling.removeprefix("grid")) if pooling.startswith("grid") else 1


class StoreError(PipelineError):
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


def content_id(path: str) -> str:
    """What a video file holds, whatever its path: a sampled sha256 of its bytes (`sampled_sha256`); "" if unreadable.

    Stage one records it per video, so that byte-identical copies under other paths (which have
    other keys) fall in one split as one file under several ids does.
    """
    try:
        return sampled_sha256(path, CONTENT_BLOCK)
    except OSError:
        return ""


def parts_dir(store_path: str | Path) -> Path:
    return Path(f"{store_path}.parts")


def segments_dir(store_path: str | Path) -> Path:
    return Path(f"{store_path}.segments")


def readers_file(store_path: str | Path) -> Path:
    return Path(f"{store_path}.readers")
