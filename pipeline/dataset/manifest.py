"""Dataset manifests: the CSV that lists every video, its label, split and group.

A manifest has one row per video with the columns `path` (absolute, or relative to the manifest
file), `label`, and optionally `split` (train/val/test), `group` (clips cut from one source, which
must never straddle train and test) and `video_id` (defaults to the path as written).

`read_manifest` validates everything before any decoding starts and names the line and column of
each problem. The importers (`importers`, re-exported here) turn the common dataset layouts into this CSV.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
from pathlib import Path

import pandas as pd

from pipeline.core.atomic import replacing
from pipeline.core.errors import InputError
from pipeline.dataset.csv_text import ManifestError, Problem, read_csv_rows, read_header, read_records

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("split", "group", "video_id")
SPLITS = ("train", "val", "test")


def read_manifest(path: str | os.PathLike, skip_missing: bool = False) -> pd.DataFrame:
    """Read and validate a manifest; return one row per video.

    Columns of the result: video_id, path (absolute), label, split ("" when the manifest has none),
    group ("" when none) and line (the row's line in the CSV, for messages). Raises ManifestError
    listing every problem. With `skip_missing`, rows whose file does not exist are dropped with a
    warning instead of being an error, and listed in `attrs["missing"]` (so that stage one records
    them as failures). `attrs["source"]` and `attrs["sha256"]` identify the manifest file. One file
    under two ids is allowed (e.g. a clip in two labelled sets) and announced with both lines.
    """
    path = Path(path)
    table = read_csv_rows(path)
    header = read_header(path, table, REQUIRED_COLUMNS)
    records, problems = read_records(table, header, (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))

    frame = pd.DataFrame(records, columns=[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "line"]).fillna(
        ""
    )  # absent columns: ""
    base = path.parent.resolve()
    resolved = _Resolver(base)
    dropped = _check_rows(path, frame, resolved, "split" in header, skip_missing, problems)
    gone = frame[frame["line"].isin(dropped)]
    frame = frame[~frame["line"].isin(dropped)].copy()

    frame["video_id"] = [vid or p for vid, p in zip(frame["video_id"].tolist(), frame["path"].tolist())]
    frame["split"] = frame["split"].str.lower()
    problems += _duplicate_ids(frame)
    if problems:
        raise ManifestError(path, sorted(problems, key=lambda p: p.line))
    if frame.empty:
        raise ManifestError(path, [Problem(0, "-", "has no video rows")])
    frame["path"] = [resolved(p) for p in frame["path"].tolist()]
    for file, lines in frame[frame["path"].duplicated(keep=False)].groupby("path", sort=False)["line"]:
        if len(lines) > 1:
            log.warning(
                "%s lines %s name the same file %s under different ids; its features are extracted once and "
                "stored under each id",
                path,
                " and ".join(str(n) for n in lines),
                file,
            )
    result = frame[["video_id", "path", "label", "split", "group", "line"]].reset_index(drop=True)
    result.attrs = {
        "source": str(path.resolve()),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "missing": [
            {
                "video_id": r.video_id or r.path,
                "path": str((base / r.path).resolve()),
                "label": r.label,
                "split": r.split.lower(),
                "group": r.group,
                "line": r.line,
            }
            for r in gone.itertuples(index=False)
        ],
    }
    return result


def write_manifest(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write rows (absolute or relative `path`, `label`, optional split/group/video_id) as a manifest.

    Paths are written relative to the manifest's folder when they lie below it, so a dataset folder
    with its manifest can be moved as a whole. An existing file is replaced only if it is a manifest
    (see `check_writable`), and only once the new one is complete.
    """
    path = Path(path)
    check_writable(path)
    out = frame.copy()
    base = path.parent.resolve()

    def relative(p: str) -> str:
        absolute = Path(p).resolve()
        return os.path.relpath(absolute, base) if absolute.is_relative_to(base) else str(absolute)

    out["path"] = [relative(p) for p in out["path"]]
    columns = [
        c
        for c in ("path", "label", "split", "group", "video_id")
        if c in out.columns and (out[c].astype(str) != "").any()
    ]
    for column in columns:
        for original, value in zip(frame[column], out[column]):
            _check_utf8(str(value), column, original)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as temporary:
        out[columns].to_csv(temporary, index=False)
    return path


def check_writable(path: str | os.PathLike) -> None:
    """Refuse (ValueError naming it) to write a manifest over anything but nothing or a manifest:
    a UTF-8 CSV whose header has `path` and `label`. Called before any work, so nothing is wasted."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_file():
        try:
            with open(path, encoding="utf-8-sig", newline="") as file:
                header = [name.strip().lower() for name in next(csv.reader(file), [])]
        except (OSError, UnicodeDecodeError, csv.Error):
            header = []
        if all(name in header for name in REQUIRED_COLUMNS):
            return
    raise InputError(
        f"{path} exists and is not a manifest (a CSV with a {','.join(REQUIRED_COLUMNS)} header): "
        f"not overwriting it; choose another output file"
    )


def _check_utf8(text: str, column: str, original) -> None:
    """A file or folder name that is not UTF-8 (Python keeps its bytes as surrogates) cannot go into a
    manifest; refuse naming it, rather than fail half-way through the write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(str(original))
        raise InputError(
            f"{raw!r} (column {column}) is not a UTF-8 name, and manifests are UTF-8: rename it "
            f"(e.g. `convmv -f latin1 -t utf8`) and rerun; no manifest was written"
        ) from None


# --- helpers ---------------------------------------------------------------------------------


def _check_rows(
    path: Path, frame: pd.DataFrame, resolved, has_split: bool, skip_missing: bool, problems: list[Problem]
) -> list[int]:
    """Add each row's problems (empty path or label, missing file, unknown split); return the lines of missing files
    skipped."""
    base, dropped = path.parent.resolve(), []
    for row in frame.astype(object).itertuples(index=False):  # object columns: iterating pandas strings is slow
        if not row.path:
            problems.append(Problem(row.line, "path", "is empty"))
        elif not _is_file(resolved(row.path)):
            if skip_missing:
                log.warning("%s line %d: skipping missing file %s", path, row.line, base / row.path)
                dropped.append(row.line)
            else:
                problems.append(
                    Problem(
                        row.line, "path", f"file not found: {base / row.path} (fix the path, or pass --skip-missing)"
                    )
                )
        if not row.label:
            problems.append(Problem(row.line, "label", "is empty"))
        if has_split and row.split.lower() not in SPLITS:
            problems.append(Problem(row.line, "split", f"is {row.split!r}; use one of {', '.join(SPLITS)}"))
    return dropped


def _duplicate_ids(frame: pd.DataFrame) -> list[Problem]:
    """A problem for every row whose video id an earlier row has."""
    problems = []
    repeated = frame[frame["video_id"].duplicated(keep=False)]  # grouping only these: 50,000 groups of one are slow
    for video_id, lines in repeated.groupby("video_id", sort=False)["line"]:
        if len(lines) > 1:
            first = int(lines.iloc[0])
            problems.extend(
                Problem(int(n), "video_id", f"duplicate id {video_id!r} (first seen on line {first})")
                for n in lines.iloc[1:]
            )
    return problems


class _Resolver:
    """Resolved absolute paths of manifest entries, as Path.resolve() gives them, at one lstat per file.

    Each folder is resolved once (a manifest lists thousands of files in a few folders), then the
    file itself is followed only if it is a symlink; each entry once.
    """

    def __init__(self, base: Path):
        self.base, self.folders, self.entries = str(base), {}, {}

    def __call__(self, entry: str) -> str:
        found = self.entries.get(entry)
        if found is None:
            found = self.entries[entry] = self._resolve(entry)
        return found

    def _resolve(self, entry: str) -> str:
        joined = os.path.join(self.base, entry)
        folder, name = os.path.split(joined)
        if name in ("", ".", ".."):
            return os.path.realpath(joined)
        real = self.folders.get(folder) or self.folders.setdefault(folder, os.path.realpath(folder))
        path = os.path.join(real, name)
        return os.path.realpath(path) if os.path.islink(path) else path


def _is_file(path: str | Path) -> bool:
    try:
        return os.path.isfile(path)
    except (OSError, ValueError):  # a name too long for the filesystem, or a NUL byte
        return False
