"""Whether a merge need only append rows to the index: the manifest grew at its end since the last sync.

The index records how many manifest rows it was last synced with and a digest of their texts;
a merge whose manifest starts with those very rows can leave their tables as they are (O(k)
instead of O(store)). See the package docstring and `sync.merge_shards`.
"""

from __future__ import annotations

import hashlib
import itertools

import pandas as pd

import pipeline.store.grace as grace
from pipeline.store.index import Index
from pipeline.store.layout import GARBAGE_SHARE, MAX_SEGMENTS, ROW_KEY, ROW_TEXT, VideoRow
from pipeline.store.segments import live_rows


def grown_from(
    index: Index, rows: list[VideoRow], new: pd.DataFrame, new_failures: pd.DataFrame
) -> tuple[int | None, str]:
    """How many leading manifest rows the store is already synced with, if a merge need only append; and the digest of
    all rows.

    The index records the digest of the manifest rows it was last synced with. When the current
    manifest starts with those very rows (texts and order), no shard of this merge holds one of
    their keys, no later row names one of their files, and the merge leaves no reason to compact,
    the tables of those rows stand: only the rows after them are synced and appended (O(k), not
    O(store)). Otherwise (None) the tables are rebuilt from the whole manifest.
    """
    synced = index.attrs.get("synced_rows")
    prefix, digest = _digests(rows, min(len(rows), synced or 0))
    if synced is None or synced > len(rows) or prefix != index.attrs.get("synced_digest"):
        return None, digest
    earlier = set(map(ROW_KEY, rows[:synced]))
    later = set(map(ROW_KEY, rows[synced:]))
    if earlier.intersection(later) or earlier.intersection(new["key"]) or earlier.intersection(new_failures["key"]):
        return None, digest
    if later.intersection(index.retired["key"]) or grace.expired(index.retired):  # the rebuild restores or drops them
        return None, digest
    added = new[new["key"].isin(later)].drop_duplicates("key")["length"].sum()
    total = index.segments["rows"].sum() + new["length"].sum()  # at most: a linked shard brings all its frames
    live = live_rows(index.videos) + added + grace.kept_rows(index.retired)
    if total and ((total - live) / total > GARBAGE_SHARE or len(index.segments) + 1 > MAX_SEGMENTS):
        return None, digest
    return synced, digest


def _digests(rows: list[VideoRow], cut: int) -> tuple[str, str]:
    """sha256 of the manifest rows' texts, over the first `cut` rows and over all of them."""
    hasher = hashlib.sha256()
    _feed(hasher, rows[:cut])
    prefix = hasher.hexdigest()
    _feed(hasher, rows[cut:])
    return prefix, hasher.hexdigest()


def _feed(hasher, rows: list[VideoRow]) -> None:
    """Each text NUL-terminated (manifests refuse NUL bytes): feeding rows in two parts equals feeding them at once."""
    if rows:
        try:
            text = "\0".join(itertools.chain.from_iterable(map(ROW_TEXT, rows)))
        except TypeError:  # a value that is not a string (rows made from Python)
            text = "\0".join(map(str, itertools.chain.from_iterable(map(ROW_TEXT, rows))))
        hasher.update((text + "\0").encode("utf-8", "surrogatepass"))
