"""A grace period for videos that left the manifest: their frames outlive the run that retired them, so an undone
manifest edit costs nothing.

A merge rebuilds the video table from the manifest, so a stored key no row lists any more (the
rows of an accidentally shortened manifest, or a replaced file's old content) leaves it. Such a
key moves to the index's `/retired` table (RETIRED_COLUMNS: its frames' place and `retired_at`,
when it left), where it is kept KEEP_S seconds (7 days): its frames count as live for the garbage
rule and move along with automatic compactions, `stored_keys` lists it, so `features` does not
queue it, and a manifest row that lists it again gets its frames back (counted as already stored).
The first merge after that time drops the entry, its frames becoming garbage; `compact` drops every
entry at once (reclaims the space now). The table is small: one row per retired video.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

KEEP_S = 7 * 86400.0  # read at call time (tests shorten it)


def retire(stored: pd.DataFrame, before: pd.DataFrame, videos: pd.DataFrame, now: float | None = None) -> pd.DataFrame:
    """The retired table after a merge: the rows of `stored` (every key with frames before it, video table columns
    and file/start) whose key the new video table `videos` lacks, each with the time it left (from `before`, the
    retired table so far, else now); those retired longer than KEEP_S ago are dropped."""
    now = time.time() if now is None else now
    since = dict(zip(before["key"], before["retired_at"]))
    left = stored[~stored["key"].isin(set(videos["key"]))].drop_duplicates("key")
    left = left.assign(retired_at=np.array([since.get(key, now) for key in left["key"]], np.float64))
    return left[now - left["retired_at"] < KEEP_S].reset_index(drop=True)


def expired(retired: pd.DataFrame, now: float | None = None) -> bool:
    """Whether an entry of the retired table is past its grace period (the next merge drops it)."""
    return bool(len(retired)) and (time.time() if now is None else now) - float(retired["retired_at"].min()) >= KEEP_S


def kept_rows(retired: pd.DataFrame) -> int:
    """Frame rows the retired table keeps live."""
    return int(retired["length"].sum())


def keep_days() -> float:
    return KEEP_S / 86400
