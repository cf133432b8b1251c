"""Shard files: the videos a run finished, written into its own folder until a merge takes them."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from pipeline.core.atomic import replacing
from pipeline.store.layout import (
    FAILURE_COLUMNS,
    FRAME_COLUMNS,
    ROW_KEY,
    TRANSIENT_STAGES,
    VIDEO_FLOATS,
    VIDEO_INTS,
    VIDEO_TEXT,
    VideoRow,
    content_id,
    parts_dir,
)
from pipeline.store.locks import run_is_live
from pipeline.store.tables import append_frames, create_frame_datasets, read_table, read_text, write_table


@dataclass
class Shard:
    """Videos finished in memory, waiting to be written as one shard file."""

    videos: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    frame_index: list[np.ndarray] = field(default_factory=list)
    timestamps: list[np.ndarray] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)

    def add_video(
        self,
        row: VideoRow,
        features: np.ndarray,
        frame_index: np.ndarray,
        timestamps: np.ndarray,
        total_frames: int,
        fps: float,
        width: int,
        height: int,
        content: str | None = None,
    ) -> None:
        """Add a finished video; `content` is its file's `content_id`, read from `row.path` when not given."""
        self.videos.append(
            {
                **_row_fields(row),
                "content": content_id(row.path) if content is None else content,
                "order": row.order,
                "total_frames": total_frames,
                "fps": fps,
                "width": width,
                "height": height,
                "length": len(features),
            }
        )
        self.features.append(features)
        self.frame_index.append(frame_index)
        self.timestamps.append(timestamps)

    def add_failure(self, row: VideoRow, stage: str, error: str, message: str) -> None:
        self.failures.append(
            {
                "video_id": row.video_id,
                "key": row.key,
                "path": row.path,
                "stage": stage,
                "error": error,
                "message": message,
                "order": row.order,
            }
        )

    def __len__(self) -> int:
        return len(self.videos) + len(self.failures)


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
    videos = pd.DataFrame(shard.videos, columns=[*VIDEO_TEXT, "content", "order", *VIDEO_INTS[:3], "fps", "length"])
    videos["offset"] = (
        np.concatenate([[0], np.cumsum(videos["length"].to_numpy())[:-1]]).astype(np.int64) if len(videos) else []
    )
    with replacing(final, final.with_suffix(".h5.tmp")) as temporary, h5py.File(temporary, "w") as out:
        create_frame_datasets(out, dim, dtype, int(videos["length"].sum()))
        append_frames(
            out, _concat(shard.features, (0, dim)), _concat(shard.frame_index, (0,)), _concat(shard.timestamps, (0,))
        )
        write_table(out, "videos", videos, fitted=True)
        write_table(out, "failures", pd.DataFrame(shard.failures, columns=[*FAILURE_COLUMNS, "order"]), fitted=True)
    return final


def shard_keys(store_path: str | Path) -> tuple[set[str], set[str]]:
    """Keys of videos (done, failed for a reason of the file's own) held in complete shards not merged yet."""
    done, failed = set(), set()
    for shard in complete_shards(store_path):
        with contextlib.suppress(OSError):  # merged and deleted by another run meanwhile
            with h5py.File(shard, "r") as handle:
                done.update(read_text(handle, "videos", "key"))
                stages = read_text(handle, "failures", "stage")
                failed.update(
                    key
                    for key, stage in zip(read_text(handle, "failures", "key"), stages)
                    if stage not in TRANSIENT_STAGES
                )
    return done, failed


def complete_shards(store_path: str | Path) -> list[Path]:
    return sorted(parts_dir(store_path).glob("run-*/*.h5"))


def foreign_shards(shards: list[Path], rows: list[VideoRow], own_run: Path | None) -> set[Path]:
    """Shards a merge must not delete: those of another live run that hold a key not in `rows`."""
    live = {folder for folder in {shard.parent for shard in shards} if folder != own_run and run_is_live(folder)}
    if not live:
        return set()
    keys = set(map(ROW_KEY, rows))

    def foreign(shard: Path) -> bool:
        with h5py.File(shard, "r") as handle:
            return not (
                keys.issuperset(read_text(handle, "videos", "key"))
                and keys.issuperset(read_text(handle, "failures", "key"))
            )

    return {shard for shard in shards if shard.parent in live and foreign(shard)}


def shard_tables(shards: list[Path]) -> tuple[pd.DataFrame, pd.DataFrame, tuple | None]:
    """Videos (with file and start) and failures of complete shards, in manifest order; their (dim, dtype)."""
    videos = [pd.DataFrame(columns=[*VIDEO_TEXT, "order", *FRAME_COLUMNS[1:]])]
    failures, dim_dtype = [pd.DataFrame(columns=[*FAILURE_COLUMNS, "order"])], None
    for shard in shards:
        with h5py.File(shard, "r") as handle:
            table = read_table(handle, "videos", (*VIDEO_TEXT, "content", "order", *VIDEO_INTS, *VIDEO_FLOATS))
            videos.append(table.assign(file=str(shard), start=table["offset"]))
            failures.append(read_table(handle, "failures", (*FAILURE_COLUMNS, "order")))
            dim_dtype = dim_dtype or (handle["features"].shape[1], handle["features"].dtype.name)
    return (
        pd.concat(videos, ignore_index=True).sort_values("order", kind="stable"),
        pd.concat(failures, ignore_index=True).sort_values("order", kind="stable"),
        dim_dtype,
    )


def remove_dead_runs(store_path: Path) -> None:
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
        if not orphan.with_suffix("").exists() and not run_is_live(orphan.with_suffix("")):
            with contextlib.suppress(OSError):
                orphan.unlink()
    with contextlib.suppress(OSError):
        parts_dir(store_path).rmdir()


def _row_fields(row: VideoRow) -> dict:
    return {name: getattr(row, name) for name in VIDEO_TEXT}


def _concat(arrays: list[np.ndarray], empty_shape: tuple) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.zeros(empty_shape, np.float32)
