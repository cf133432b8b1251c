"""Readers of a store's frames register, so that no merge or compaction deletes a segment under them.

An open h5py handle of the index reads the segments it names lazily, by file name: once a
compaction has deleted them, plain HDF5 reads their frames as zeros, without an error. So a reader
that reads frames over time (`train --data stream`) holds a shared lock on `<store>.h5.readers`
from before it opens the index until it is done, and deleting unreferenced segments
(`segments.remove_unreferenced`) first checks that no reader holds it; while one does, the files
stay (the next merge or `compact` after the last reader deletes them), so disk use may exceed the
garbage bound for that long. Ordering makes this race-free without blocking anyone: a writer checks
only after swapping the new index in, so a reader that registers later opens the new index, which
names none of the segments being deleted.

The lock is an flock (POSIX): released by the kernel when the reader's process ends, however it ends.
Where the file cannot be made (a read-only folder: nobody can compact that store either) or flock
is unavailable, reading goes on unregistered.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from pipeline.store.layout import readers_file

try:
    import fcntl
except ImportError:  # not POSIX: readers cannot register
    fcntl = None

log = logging.getLogger(__name__)


class ReaderLock:
    """A registration as a reader of the store at `store_path`, held until `release()` (or the process ends)."""

    def __init__(self, store_path: str | Path):
        self.fd = None
        if fcntl is None or not Path(store_path).is_file():  # no store, nothing to keep (and no file left behind)
            return
        try:
            self.fd = os.open(readers_file(store_path), os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            log.debug("reading %s unregistered: %s", store_path, error)
            return
        fcntl.flock(self.fd, fcntl.LOCK_SH)  # waits only while a writer checks (never held longer)

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)  # closing the only descriptor of the file releases its flock
            self.fd = None

    def __enter__(self) -> "ReaderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:
        self.release()


def readers_active(store_path: str | Path) -> bool:
    """Whether a reader is registered now; no file means none ever registered since it could be made."""
    if fcntl is None:
        return False
    try:
        fd = os.open(readers_file(store_path), os.O_RDWR)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # cannot tell: keep the files
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False
