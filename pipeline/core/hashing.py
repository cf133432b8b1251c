"""Content hashes of files: the identity of weights files (and of anything else that must not be told apart by its
path)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sampled_sha256(path: str | Path, block: int) -> str:
    """sha256 of a file's size and of its first, middle and last `block` bytes (the whole file when it is smaller).

    Reads at most 3 blocks, whatever the file's size: an identity for files too large to hash in
    full on every use. Identical bytes always give the same value; two files that differ only
    outside the sampled blocks (and are of one size) give the same value too, so use it where
    such a collision is harmless (grouping copies) or as a check against truncation and replacement.
    """
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        digest = hashlib.sha256(f"{size}\0".encode())
        for start in sorted({0, max(0, size // 2 - block // 2), max(0, size - block)}):
            handle.seek(start)
            digest.update(handle.read(block))
    return digest.hexdigest()
