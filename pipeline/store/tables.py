"""Tables and frame datasets in HDF5: one dataset per column, written and read as pandas frames."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd

from pipeline.store.layout import FLOATS, INTS, OPTIONAL_COLUMNS, SCHEMA_VERSION

TEXT = h5py.string_dtype()
TABLE_CHUNK = 4096  # rows per chunk of the index's table columns (extendable, for merges that append)


def create_frame_datasets(out: h5py.File, dim: int, dtype: str, rows: int | None = None) -> None:
    """Empty frame datasets; chunks of at most `rows` rows when the final count is known.

    HDF5 allocates whole chunks, so a one-video segment with 1024-row chunks would take 1024 rows
    on disk; sized to its rows, a segment's bytes follow its row count, which the garbage rule counts.
    """
    fit = max(1, rows) if rows is not None else 1 << 30
    chunk_rows = max(1, min(1024, fit, (1 << 20) // max(1, dim * np.dtype(dtype).itemsize)))
    out.create_dataset("features", (0, dim), dtype=dtype, maxshape=(None, dim), chunks=(chunk_rows, max(1, dim)))
    out.create_dataset("frame_index", (0,), dtype=np.int64, maxshape=(None,), chunks=(min(4096, fit),))
    out.create_dataset("timestamps", (0,), dtype=np.float64, maxshape=(None,), chunks=(min(4096, fit),))


def append_frames(out: h5py.File, features: np.ndarray, frame_index: np.ndarray, timestamps: np.ndarray) -> int:
    """Append frame rows; return the offset of the first appended row."""
    start = out["features"].shape[0]
    for name, values in (("features", features), ("frame_index", frame_index), ("timestamps", timestamps)):
        dataset = out[name]
        dataset.resize(start + len(values), axis=0)
        dataset[start:] = values.astype(dataset.dtype, copy=False)
    return start


def write_attrs(out: h5py.File, attrs: dict) -> None:
    out.attrs["schema_version"] = SCHEMA_VERSION
    for name, value in attrs.items():
        if name != "schema_version":
            out.attrs[name] = json.dumps(value, sort_keys=True) if isinstance(value, dict) else value


def write_table(out: h5py.File, name: str, table: pd.DataFrame, fitted: bool = False) -> None:
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
        add_column(group, column, table[column], chunk)


def add_column(group: h5py.Group, column: str, values: pd.Series, chunk: int = TABLE_CHUNK) -> None:
    """One extendable column dataset of a table group."""
    values = column_values(column, values)
    group.create_dataset(
        column, data=values, dtype=TEXT if values.dtype == object else values.dtype, maxshape=(None,), chunks=(chunk,)
    )


def column_values(column: str, values: pd.Series) -> np.ndarray:
    """A table column as HDF5 takes it: int64, float64, or str objects (written as UTF-8)."""
    if column in INTS:
        return values.to_numpy(np.int64)
    if column in FLOATS:
        return values.to_numpy(np.float64)
    return values.to_numpy().astype(str).astype(object)


def read_table(handle: h5py.File, name: str, columns) -> pd.DataFrame:
    """Columns of a table; an OPTIONAL_COLUMNS one that a store of an older version lacks reads as its default.

    A table an older store lacks altogether (`retired`) reads as empty.
    """
    group = handle.get(name, {})
    rows = next((group[c].shape[0] for c in group), 0)
    return pd.DataFrame(
        {
            c: (group[c].asstr()[:] if group[c].dtype.kind == "O" else group[c][:])
            if c in group
            else _default_column(c, rows)
            for c in columns
        }
    )


def _default_column(column: str, rows: int) -> np.ndarray:
    if column not in OPTIONAL_COLUMNS and rows:
        raise KeyError(f"column {column!r} is missing")
    default = OPTIONAL_COLUMNS.get(column, "")
    return np.full(rows, default, object if isinstance(default, str) else np.int64)


def read_text(handle: h5py.File, name: str, column: str) -> list[str]:
    return list(handle[name][column].asstr()[:]) if name in handle else []
