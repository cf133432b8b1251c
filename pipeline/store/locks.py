"""The locks of a store: one for merges into it, and one per run that writes shards."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from filelock import FileLock, Timeout

from pipeline.store.layout import StoreError

log = logging.getLogger(__name__)


LOCK_NOTICE_S = 5.0  # after this long waiting for another run's merge, say so


@contextlib.contextmanager
def store_lock(store_path: str | Path, timeout: float):
    """The store's merge lock; waits up to `timeout` seconds for another run's merge, saying so."""
    lock = FileLock(f"{store_path}.lock")
    try:
        lock.acquire(timeout=min(LOCK_NOTICE_S, timeout))
    except Timeout:
        log.info(
            "waiting for another run's merge into %s (lock %s.lock; up to %gs, --lock-timeout)",
            store_path,
            store_path,
            timeout,
        )
        try:
            lock.acquire(timeout=max(0.0, timeout - LOCK_NOTICE_S))
        except Timeout:
            raise StoreError(
                f"another run has been merging into {store_path} for over {timeout:g}s; try again later or "
                f"raise --lock-timeout (its finished videos are kept)"
            ) from None
    try:
        yield
    finally:
        lock.release()


def run_is_live(folder: Path) -> bool:
    """Whether the run owning `folder` still holds its lock (a run that ended or died does not)."""
    lock = FileLock(f"{folder}.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False
