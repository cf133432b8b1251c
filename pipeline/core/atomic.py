"""Writing a file so that readers see the old one or the new one, never half of either.

The content goes to a temporary file in the target's folder (same filesystem, so the final
`os.replace` is one atomic rename), optionally fsynced first, and the temporary file is deleted
if anything goes wrong before the rename.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike, temporary: str | os.PathLike | None = None, fsync: bool = False):
    """Yield a temporary path to write; on success it replaces `path` in one step.

    `temporary` defaults to `.<name>.<pid>.tmp` beside `path` (two processes never share one);
    pass a name of your own where a cleanup or a file format relies on it. With `fsync`, the data
    reaches the disk before the rename, so a power cut cannot leave the new name on empty blocks.
    """
    path = Path(path)
    temporary = Path(temporary) if temporary is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
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


def fsync_file(path: str | os.PathLike) -> None:
    """Flush a written file's data to the disk."""
    with open(path, "rb+") as handle:
        os.fsync(handle.fileno())
