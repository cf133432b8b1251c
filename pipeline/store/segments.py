"""Segment files and the index over them: making segments from shards, compacting, writing the index."""

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

from pipeline.core.atomic import fsync_file, replacing
from pipeline.store.index import Index
from pipeline.store.integrity import recorded, segment_row
from pipeline.store.layout import (
    APPEND_ROWS,
    FAILURE_COLUMNS,
    FRAME_COLUMNS,
    FRAME_DATASETS,
    OPTIONAL_COLUMNS,
    RETIRED_COLUMNS,
    SEGMENT_COLUMNS,
    VIDEO_COLUMNS,
    segments_dir,
)
from pipeline.store.readers import readers_active
from pipeline.store.tables import (
    add_column,
    append_frames,
    column_values,
    create_frame_datasets,
    write_attrs,
    write_table,
)

log = logging.getLogger(__name__)


def stored_frames(
    store_path: Path, index: Index, table: pd.DataFrame | None = None, columns=FRAME_COLUMNS
) -> pd.DataFrame:
    """Where each key's frames are (of the video table, or of `table`): segment file and row within it, from the
    global offsets; with the table's `columns`."""
    videos = (index.videos if table is None else table).drop_duplicates("key")
    starts = np.concatenate([[0], np.cumsum(index.segments["rows"].to_numpy(np.int64))])
    position = np.searchsorted(starts, videos["offset"].to_numpy(np.int64), side="right") - 1
    names = (f"{segments_dir(store_path)}/" + index.segments["name"]).to_numpy(object)
    return videos.assign(
        file=names[position] if len(videos) else [], start=videos["offset"].to_numpy(np.int64) - starts[position]
    )[list(columns)].reset_index(drop=True)


def new_segment(
    store_path: Path, new: pd.DataFrame, dim_dtype: tuple, link: bool = True
) -> tuple[str, int, pd.DataFrame]:
    """Make the new videos' frames one segment: a hard link to their shard (if `link`), or a copy of the shards'
    frames."""
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
    starts = copy_frames(folder / name, new, dim_dtype)
    return name, int(new["length"].sum()), new.assign(file=str(folder / name), start=starts)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError as error:
        if isinstance(error, FileExistsError):
            raise
        with replacing(target, target.with_suffix(".h5.tmp")) as temporary:  # a filesystem without hard links
            temporary.write_bytes(source.read_bytes())


def copy_frames(target: Path, videos: pd.DataFrame, dim_dtype: tuple) -> np.ndarray:
    """Copy the frames of `videos` (file, start, length) into a new segment file; return their new starts."""
    starts, buffered, handles, position = [], [], {}, 0
    with replacing(target, target.with_suffix(".h5.tmp"), fsync=True) as temporary, contextlib.ExitStack() as opened:
        with h5py.File(temporary, "w") as out:
            create_frame_datasets(out, *dim_dtype, int(videos["length"].sum()))
            for video in videos.itertuples(index=False):
                handle = handles.get(video.file) or handles.setdefault(
                    video.file, opened.enter_context(h5py.File(video.file, "r"))
                )
                rows = slice(int(video.start), int(video.start) + int(video.length))
                buffered.append(tuple(handle[name][rows] for name in FRAME_DATASETS))
                starts.append(position)
                position += int(video.length)
                if sum(len(item[0]) for item in buffered) >= APPEND_ROWS:
                    append_frames(out, *(np.concatenate(column) for column in zip(*buffered)))
                    buffered = []
            if buffered:
                append_frames(out, *(np.concatenate(column) for column in zip(*buffered)))
            table = videos[[c for c in VIDEO_COLUMNS if c != "offset"]].assign(offset=np.asarray(starts, np.int64))
            write_table(out, "videos", table, fitted=True)
            write_table(out, "failures", pd.DataFrame(columns=FAILURE_COLUMNS), fitted=True)
    return np.asarray(starts, np.int64)


def live_rows(videos: pd.DataFrame) -> int:
    """Frame rows an index's video table references (a file under two ids counts once)."""
    return int(videos.drop_duplicates("offset")["length"].sum())


def compact_frames(
    store_path: Path, videos: pd.DataFrame, dim_dtype: tuple, retired: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Copy the frames the video and retired tables reference (once per key) into one new segment; return both
    tables, pointing there, and the segment list."""
    unique = pd.concat([videos, retired[videos.columns.intersection(retired.columns)]]).drop_duplicates("key")
    name = f"seg-{uuid.uuid4().hex}.h5"
    segments_dir(store_path).mkdir(exist_ok=True)
    starts = copy_frames(segments_dir(store_path) / name, unique, dim_dtype)
    moved = pd.DataFrame(
        {"key": unique["key"].to_numpy(), "file": str(segments_dir(store_path) / name), "start": starts}
    )
    videos, retired = (
        table.drop(columns=["file", "start"]).merge(moved, on="key", how="left") for table in (videos, retired)
    )
    return videos, retired, pd.DataFrame([segment_row(store_path, name, int(unique["length"].sum()))])


def write_index(
    store_path: Path,
    attrs: dict,
    videos: pd.DataFrame,
    failures: pd.DataFrame,
    segments: pd.DataFrame,
    dim_dtype: tuple,
    step=lambda name: None,
    retired: pd.DataFrame | None = None,
) -> None:
    """Write the index under a temporary name and rename it over the store: readers see the old or the new one.

    `retired` (with global offsets) is the table of kept frames of videos that left the manifest (see `retired`).
    """
    retired = pd.DataFrame(columns=RETIRED_COLUMNS) if retired is None else retired
    with replacing(store_path, _index_temporary(store_path)) as temporary:
        with h5py.File(temporary, "w") as out:
            write_attrs(out, attrs)
            _write_frame_mapping(out, store_path, segments, dim_dtype)
            write_table(out, "videos", videos[list(VIDEO_COLUMNS)])
            write_table(out, "failures", failures[list(FAILURE_COLUMNS)])
            write_table(out, "segments", recorded(store_path, segments)[list(SEGMENT_COLUMNS)])
            write_table(out, "retired", retired[list(RETIRED_COLUMNS)])
        fsync_file(temporary)
        step("index_written")


def append_index(
    store_path: Path,
    attrs: dict,
    added: pd.DataFrame,
    failures: pd.DataFrame,
    segments: pd.DataFrame,
    dim_dtype: tuple,
    step=lambda name: None,
) -> None:
    """`write_index` for a merge that only appends videos: a copy of the index with `added` appended to its video table.

    Copying the file is a fast byte copy; the video table's existing rows are neither read nor
    converted. The small tables and the frame mapping are rewritten. Renamed over the store as
    `write_index` does.
    """
    with replacing(store_path, _index_temporary(store_path)) as temporary:
        shutil.copyfile(store_path, temporary)
        with h5py.File(temporary, "r+") as out:
            write_attrs(out, attrs)
            existing = out["videos"]["video_id"].shape[0]
            for column in VIDEO_COLUMNS:
                if (
                    column not in out["videos"]
                ):  # a column added since the store was written: its default for the old rows
                    add_column(out["videos"], column, pd.Series([OPTIONAL_COLUMNS[column]] * existing, dtype=object))
                dataset = out["videos"][column]
                start = dataset.shape[0]
                dataset.resize((start + len(added),))
                dataset[start:] = column_values(column, added[column])
            for name in FRAME_DATASETS:
                del out[name]
            _write_frame_mapping(out, store_path, segments, dim_dtype)
            write_table(out, "failures", failures[list(FAILURE_COLUMNS)])
            write_table(out, "segments", recorded(store_path, segments)[list(SEGMENT_COLUMNS)])
        fsync_file(temporary)
        step("index_written")


def with_offsets(videos: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """Global row offsets into the virtual datasets, from each video's segment file and row within it."""
    if not len(videos):
        return videos.assign(offset=np.zeros(0, np.int64))
    starts = pd.Series(
        np.concatenate([[0], np.cumsum(segments["rows"].to_numpy(np.int64))])[:-1], index=segments["name"].to_numpy()
    )
    names = videos["file"].astype(str).str.rsplit("/", n=1).str[-1]
    return videos.assign(offset=names.map(starts).to_numpy(np.int64) + videos["start"].to_numpy(np.int64))


def _write_frame_mapping(out: h5py.File, store_path: Path, segments: pd.DataFrame, dim_dtype: tuple) -> None:
    """The virtual datasets /features, /frame_index, /timestamps: the segments' datasets end to end."""
    dim, dtype = dim_dtype or (0, "float16")
    total = int(segments["rows"].sum())
    if not total:
        create_frame_datasets(out, dim, dtype)
        return
    shapes = {"features": ((dim,), dtype), "frame_index": ((), np.int64), "timestamps": ((), np.float64)}
    for name, (tail, kind) in shapes.items():
        layout = h5py.VirtualLayout(shape=(total, *tail), dtype=kind)
        position = 0
        for segment, rows in zip(segments["name"], segments["rows"]):
            # relative to the index's folder, so the store and its segments can be moved together
            layout[position : position + rows] = h5py.VirtualSource(
                f"{segments_dir(store_path).name}/{segment}", name, shape=(rows, *tail)
            )
            position += rows
        out.create_virtual_dataset(name, layout)


def remove_unreferenced(store_path: Path, referenced: set) -> None:
    """Under the lock, after the index is swapped: segment files it does not reference (a killed merge's, or
    compacted away) and temporary files.

    While a reader is registered (see `readers`), segment files stay: it may read them through an
    older index. The next merge or `compact` after it deletes them.
    """
    folder = segments_dir(store_path)
    unreferenced = [path for path in folder.glob("*") if path.name not in referenced] if folder.is_dir() else []
    kept = [path for path in unreferenced if not path.name.endswith(".tmp")]  # a temporary file has no reader
    if kept and readers_active(store_path):
        log.info(
            "kept %d segment file(s) of %s that its index no longer references: a reader (e.g. `train --data "
            "stream`) may still read them; the next merge or `compact` after it ends deletes them",
            len(kept),
            store_path,
        )
        unreferenced = [path for path in unreferenced if path not in kept]
    for path in unreferenced:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    with contextlib.suppress(FileNotFoundError):
        _index_temporary(store_path).unlink()


def _index_temporary(store_path: Path) -> Path:
    """The name a new index is written under; a leftover of a killed merge is deleted by the next."""
    return store_path.with_name(store_path.name + ".index.tmp")
