"""Whether a store's segment files are those its index names: recorded size and digest per segment.

Plain HDF5 reads the frames of a missing segment as zeros, and a truncated one fails only once its
frames are read (h5py: "truncated file", naming no file). So a merge records, per segment, its size
in bytes and a sampled sha256 (size plus its first, middle and last 64 KiB: `SEGMENT_BLOCK`), and
every command that uses a store checks them first: one stat per segment catches truncation and
growth, the digest (at most 192 KiB read per segment) a same-size overwrite or a replacement of a
segment's head, middle or tail. The cost does not grow with the videos, only with the segments
(at most MAX_SEGMENTS, usually a few): about 0.3 ms per segment from the page cache (70 ms for 256). Frames
elsewhere in the file are not hashed: that would read the whole store on every command.

A store written before the records existed (bytes -1) has each unrecorded segment opened with
h5py instead, which detects truncation from the HDF5 superblock; the next index a merge writes
records them.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import pandas as pd

from pipeline.core.hashing import sampled_sha256
from pipeline.store.layout import SEGMENT_BLOCK, StoreError, segments_dir


def segment_row(store_path: Path, name: str, rows: int) -> dict:
    """A segment table row for the segment file `name` of `rows` frame rows, recording what the file is now."""
    path = segments_dir(store_path) / name
    return {
        "name": name,
        "rows": int(rows),
        "bytes": path.stat().st_size,
        "digest": sampled_sha256(path, SEGMENT_BLOCK),
    }


def recorded(store_path: Path, segments: pd.DataFrame) -> pd.DataFrame:
    """`segments` with the size and digest of every segment an older index did not record, taken from the files."""
    unrecorded = segments["bytes"] < 0
    if not unrecorded.any():
        return segments
    rows = [
        segment_row(store_path, name, rows)
        if missing
        else {"name": name, "rows": rows, "bytes": size, "digest": digest}
        for name, rows, size, digest, missing in zip(
            segments["name"], segments["rows"], segments["bytes"], segments["digest"], unrecorded
        )
    ]
    return pd.DataFrame(rows, columns=segments.columns)


def segment_problems(store_path: str | Path, segments: pd.DataFrame) -> list[tuple[str, str]]:
    """(file name, what is wrong) for each segment of `segments` that is missing or not what the index recorded."""
    problems = []
    for name, size, digest in zip(segments["name"], segments["bytes"], segments["digest"]):
        problem = _problem(segments_dir(store_path) / name, int(size), digest)
        if problem:
            problems.append((name, problem))
    return problems


def require_intact(store_path: str | Path, segments: pd.DataFrame) -> None:
    """Refuse a store whose index names a segment file that is gone, truncated or changed: exit 2, naming them."""
    problems = segment_problems(store_path, segments)
    if not problems:
        return
    missing = sum(problem == "missing" for _, problem in problems)
    counts = [f"lacks {missing} segment file(s)"] * bool(missing) + [
        f"has {len(problems) - missing} damaged segment file(s)"
    ] * bool(len(problems) - missing)
    named = "; ".join(f"{segments_dir(store_path) / name}: {problem}" for name, problem in problems[:5])
    raise StoreError(
        f"the feature store {store_path} {' and '.join(counts)} in {segments_dir(store_path)} ({named}"
        f"{' ...' if len(problems) > 5 else ''}); their frames cannot be read. "
        f"{'Copy the whole folder with the store, or run' if missing else 'Run'} "
        f"`python -m pipeline compact {store_path} --recover` (the index is rebuilt from the intact segments) and "
        f"then `python -m pipeline features` with its manifest again (it re-extracts what was lost)"
    )


def _problem(path: Path, size: int, digest: str) -> str:
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "missing"
    except OSError as error:
        return f"unreadable ({error.strerror})"
    if size >= 0 and actual != size:
        return f"{actual} bytes where the index recorded {size} ({'truncated' if actual < size else 'grown'})"
    try:
        if size >= 0:
            return "" if sampled_sha256(path, SEGMENT_BLOCK) == digest else "its bytes differ from what was recorded"
        with h5py.File(path, "r"):
            return ""
    except OSError as error:
        return f"unreadable ({error})"
