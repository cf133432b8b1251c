"""Writing a file so that readers see the old one or the new one, never half of either, and never through a link.

The content goes to a temporary file in the target's folder (same filesystem, so the final
`os.replace` is one atomic rename), optionally fsynced first, and the temporary file is deleted
if anything goes wrong before the rename. This is the one way the tool writes into run
directories, report roots and output folders: those may come from anyone, and a name there may be
a planted symbolic link (`report.md -> ~/.bashrc`) or a hard link to someone's file. Opening such a
name for writing would write into its target; the rename replaces the name itself, so the target
is never touched. The default temporary name is created exclusively (`O_EXCL`, which never follows
a link), with a random part nobody can plant in advance.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path

TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")  # the names `replacing` writes (left over only by a killed writer)


@contextlib.contextmanager
def replacing(path: str | os.PathLike, temporary: str | os.PathLike | None = None, fsync: bool = False):
    """Yield a temporary path to write; on success it replaces `path` in one step.

    `temporary` defaults to a new file `.<name>.<random>.tmp` beside `path`, made exclusively (two
    processes never share one, and a planted link cannot be in its place); its mode is what the
    umask gives a new file. Pass a name of your own where a cleanup or a file format relies on it
    (a link at that name is removed first). With `fsync`, the data reaches the disk before the
    rename, so a power cut cannot leave the new name on empty blocks.
    """
    path = Path(path)
    if temporary is None:
        handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(handle)
        temporary = Path(name)
        temporary.chmod(0o666 & ~umask())  # mkstemp's 0600 would make a shared report private
    else:
        temporary = Path(temporary)
        if temporary.is_symlink():
            temporary.unlink()
    try:
        yield temporary
        if fsync:
            fsync_file(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Replace `path` by `text` atomically (see `replacing`)."""
    with replacing(path) as temporary:
        temporary.write_text(text)
    return Path(path)


def write_csv(path: str | os.PathLike, frame, **options) -> Path:
    """Replace `path` by a DataFrame's CSV (`frame.to_csv(..., **options)`) atomically (see `replacing`)."""
    with replacing(path) as temporary:
        frame.to_csv(temporary, **options)
    return Path(path)


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())


def umask() -> int:
    """The process's umask: from /proc where Linux shows it, else by setting it and restoring it at once (which
    another thread could see)."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        with open("/proc/self/status") as status:
            return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
