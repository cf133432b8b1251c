"""Opening a store's index file: refusing what is not a store of this version, and reading its tables."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline.store.layout import (
    FAILURE_COLUMNS,
    RETIRED_COLUMNS,
    SCHEMA_VERSION,
    SEGMENT_COLUMNS,
    TRANSIENT_STAGES,
    VIDEO_COLUMNS,
    StoreError,
    segments_dir,
)
from pipeline.store.tables import read_table, read_text


def read_videos(store_path: str | Path) -> pd.DataFrame:
    """The /videos table as a DataFrame (one row per stored video, in manifest order)."""
    with open_index(store_path) as handle:
        return read_table(handle, "videos", VIDEO_COLUMNS)


def stored_keys(store_path: str | Path) -> tuple[set[str], set[str]]:
    """Keys whose frames are stored (videos, and retired ones still kept), and of failures for a reason of the
    file's own (read without the rest of the tables)."""
    with open_index(store_path) as handle:
        failures = read_table(handle, "failures", ("key", "stage"))
        return set(read_text(handle, "videos", "key")) | set(read_text(handle, "retired", "key")), set(
            failures.loc[~failures["stage"].isin(TRANSIENT_STAGES), "key"]
        )


def read_failures(store_path: str | Path) -> pd.DataFrame:
    with open_index(store_path) as handle:
        return read_table(handle, "failures", FAILURE_COLUMNS)


def read_attrs(store_path: str | Path) -> dict:
    """Root attributes, with the JSON ones (feature_config, versions, last_sync) decoded."""
    with open_index(store_path) as handle:
        return decode_attrs(handle)


@dataclass
class Index:
    attrs: dict
    videos: pd.DataFrame
    failures: pd.DataFrame
    segments: pd.DataFrame
    dim_dtype: tuple | None
    retired: pd.DataFrame  # keys that left the manifest, their frames kept for a while (see `retired`)

    @classmethod
    def empty(cls) -> "Index":
        return cls(
            {},
            pd.DataFrame(columns=VIDEO_COLUMNS),
            pd.DataFrame(columns=FAILURE_COLUMNS),
            pd.DataFrame(
                {
                    "name": pd.Series(dtype=object),
                    "rows": pd.Series(dtype=np.int64),
                    "bytes": pd.Series(dtype=np.int64),
                    "digest": pd.Series(dtype=object),
                }
            ),
            None,
            pd.DataFrame(columns=RETIRED_COLUMNS),
        )


@contextlib.contextmanager
def open_index(store_path: str | Path):
    """Open a store's index for reading; a missing, truncated, foreign or old one is a StoreError naming it."""
    if not Path(store_path).is_file():
        raise StoreError(f"no feature store at {store_path}; run `python -m pipeline features` first")
    refuse_foreign(store_path)
    try:
        handle = h5py.File(store_path, "r")
    except OSError as error:
        raise StoreError(
            f"the feature store {store_path} cannot be read ({error}); it is truncated or corrupt. Recover "
            f"what is readable with `python -m pipeline compact {store_path} --recover`, then rerun "
            f"`python -m pipeline features` to complete it"
        ) from None
    with handle:
        version = int(handle.attrs.get("schema_version", 0))
        if version == 1:
            raise StoreError(
                f"the feature store {store_path} has the layout of version 1 (one file, copied on every merge); "
                f"migrate it in place, without re-extracting, with `python -m pipeline compact {store_path}`"
            )
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{store_path} is not a feature store of this version (schema_version {version}, expected "
                f"{SCHEMA_VERSION}); point --store at a path of its own"
            )
        yield handle


def refuse_foreign(store_path: str | Path) -> None:
    """A file with no store attributes and no segment folder is someone else's: refuse it, advise nothing about it."""
    ours = (
        segments_dir(store_path).is_dir() or Path(f"{Path(store_path).with_suffix('')}.failures.csv").is_file()
    )  # every merge writes both
    if Path(store_path).is_file() and not ours and schema_version(Path(store_path)) == 0:
        raise StoreError(
            f"{store_path} is not a feature store (no store attributes, no {segments_dir(store_path).name}/ folder); "
            f"point --store at a path of its own"
        )


def schema_version(store_path: Path) -> int:
    try:
        with h5py.File(store_path, "r") as handle:
            return int(handle.attrs.get("schema_version", 0))
    except OSError:
        return 0


JSON_ATTRS = ("feature_config", "versions", "last_sync")  # root attributes that hold a JSON object


def decode_attrs(handle: h5py.File, lenient: bool = False) -> dict:
    """Root attributes, the JSON ones decoded; one that is not a JSON object (edited by hand) is a StoreError,
    or left out if `lenient` (recovery keeps the rest)."""
    attrs = {name: handle.attrs[name] for name in handle.attrs}
    for name in JSON_ATTRS:
        if name in attrs:
            try:
                attrs[name] = json.loads(attrs[name])
                if not isinstance(attrs[name], dict):
                    raise ValueError(f"a JSON {type(attrs[name]).__name__}, not an object")
            except (TypeError, ValueError) as error:  # JSONDecodeError is a ValueError
                if lenient:
                    del attrs[name]
                    continue
                raise StoreError(
                    f"the attribute {name!r} of the feature store {handle.filename} is not a JSON object ({error}); "
                    f"it was edited or damaged. Restore it (h5py: f.attrs[{name!r}]), or rebuild the index with "
                    f"`python -m pipeline compact {handle.filename} --recover` and rerun `python -m pipeline features` "
                    f"with the options the store was made with"
                ) from None
    return attrs


def load_index(store_path: Path, video_columns=VIDEO_COLUMNS) -> Index:
    """The index's tables; of the video table only `video_columns` (its text columns are the slow part)."""
    with open_index(store_path) as handle:
        features = handle["features"]
        return Index(
            decode_attrs(handle),
            read_table(handle, "videos", video_columns),
            read_table(handle, "failures", FAILURE_COLUMNS),
            read_table(handle, "segments", SEGMENT_COLUMNS),
            (features.shape[1], features.dtype.name) if features.shape[1] else None,  # an empty recovered index: none
            read_table(handle, "retired", RETIRED_COLUMNS),
        )


def index_segments(store_path: Path) -> pd.DataFrame:
    """The segment table: name, rows and (recorded by merges since they were) bytes and digest."""
    with open_index(store_path) as handle:
        return read_table(handle, "segments", SEGMENT_COLUMNS)


def check_owner_attrs(store_path: Path, stored: dict, attrs: dict) -> None:
    """One store per dataset and feature config: refuse another manifest's or config's store."""
    if stored.get("manifest") and attrs.get("manifest") and stored["manifest"] != attrs["manifest"]:
        raise StoreError(
            f"the feature store {store_path} belongs to the manifest {stored['manifest']}, not to {attrs['manifest']}; "
            f"two manifests never share a store: leave out --store (each manifest gets its own), or pass another path"
        )
    if stored.get("config_hash") and attrs.get("config_hash") and stored["config_hash"] != attrs["config_hash"]:
        raise StoreError(
            f"the feature store {store_path} holds features of another config ({_differences(stored, attrs)}); "
            f"leave out --store so that this config gets its own store, or pass another path"
        )


def _differences(stored: dict, attrs: dict) -> str:
    """The feature-config keys that differ, or the two config hashes when the store records no config.

    A key left out of a config has its default (pooling avg is left out, so old stores keep their names).
    """
    old, new = stored.get("feature_config") or {}, attrs.get("feature_config") or {}
    changed = [
        f"{key}: {old.get(key, 'the default')} in the store, {new.get(key, 'the default')} asked"
        for key in sorted(set(old) | set(new))
        if old and old.get(key) != new.get(key)
    ]
    return "; ".join(changed) or f"config {stored['config_hash']} in the store, {attrs['config_hash']} asked"
