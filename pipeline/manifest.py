"""Dataset manifests: the CSV that lists every video, its label, split and group.

A manifest has one row per video with the columns `path` (absolute, or relative to the manifest
file), `label`, and optionally `split` (train/val/test), `group` (clips cut from one source, which
must never straddle train and test) and `video_id` (defaults to the path as written).

`read_manifest` validates everything before any decoding starts and names the line and column of
each problem. The importers turn the common dataset layouts into this CSV.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .atomic import replacing

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("split", "group", "video_id")
SPLITS = ("train", "val", "test")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".ogg", ".ogv", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp")


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is (file line and column) and what is wrong."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "header"
        return f"{where}, column '{_printable(self.column)}': {_printable(self.message)}"


def _printable(text: str) -> str:
    """Control characters (newlines, NUL, separators) escaped, so that each problem stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ManifestError(ValueError):
    """The manifest cannot be used; `problems` lists every reason, each with its line."""

    def __init__(self, path: str | os.PathLike, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(f"  {self.path}: {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in manifest {self.path}:\n{shown}{more}")


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
    table = _read_csv(path)
    header = _header(path, table, REQUIRED_COLUMNS)
    records, problems = _records(table, header, (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS))

    frame = pd.DataFrame(records, columns=[*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS, "line"]).fillna("")  # absent columns: ""
    has_split = "split" in header
    base = path.parent.resolve()
    dropped = []
    resolved = _Resolver(base)
    for row in frame.astype(object).itertuples(index=False):  # object columns: iterating pandas strings is slow
        if not row.path:
            problems.append(Problem(row.line, "path", "is empty"))
        elif not _is_file(resolved(row.path)):
            if skip_missing:
                log.warning("%s line %d: skipping missing file %s", path, row.line, base / row.path)
                dropped.append(row.line)
            else:
                problems.append(Problem(row.line, "path", f"file not found: {base / row.path} (fix the path, or pass --skip-missing)"))
        if not row.label:
            problems.append(Problem(row.line, "label", "is empty"))
        if has_split and row.split.lower() not in SPLITS:
            problems.append(Problem(row.line, "split", f"is {row.split!r}; use one of {', '.join(SPLITS)}"))
    gone = frame[frame["line"].isin(dropped)]
    frame = frame[~frame["line"].isin(dropped)].copy()

    frame["video_id"] = [vid or p for vid, p in zip(frame["video_id"].tolist(), frame["path"].tolist())]
    frame["split"] = frame["split"].str.lower()
    repeated = frame[frame["video_id"].duplicated(keep=False)]  # grouping only these: 50,000 groups of one are slow
    for video_id, lines in repeated.groupby("video_id", sort=False)["line"]:
        if len(lines) > 1:
            first = int(lines.iloc[0])
            problems.extend(Problem(int(n), "video_id", f"duplicate id {video_id!r} (first seen on line {first})") for n in lines.iloc[1:])
    if problems:
        raise ManifestError(path, sorted(problems, key=lambda p: p.line))
    if frame.empty:
        raise ManifestError(path, [Problem(0, "-", "has no video rows")])
    frame["path"] = [resolved(p) for p in frame["path"].tolist()]
    for file, lines in frame[frame["path"].duplicated(keep=False)].groupby("path", sort=False)["line"]:
        if len(lines) > 1:
            log.warning("%s lines %s name the same file %s under different ids; its features are extracted once and stored under each id",
                        path, " and ".join(str(n) for n in lines), file)
    result = frame[["video_id", "path", "label", "split", "group", "line"]].reset_index(drop=True)
    result.attrs = {"source": str(path.resolve()), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                    "missing": [{"video_id": r.video_id or r.path, "path": str((base / r.path).resolve()), "label": r.label,
                                 "split": r.split.lower(), "group": r.group, "line": r.line} for r in gone.itertuples(index=False)]}
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
    columns = [c for c in ("path", "label", "split", "group", "video_id") if c in out.columns and (out[c].astype(str) != "").any()]
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
    raise ValueError(f"{path} exists and is not a manifest (a CSV with a {','.join(REQUIRED_COLUMNS)} header): "
                     f"not overwriting it; choose another output file")


def _check_utf8(text: str, column: str, original) -> None:
    """A file or folder name that is not UTF-8 (Python keeps its bytes as surrogates) cannot go into a
    manifest; refuse naming it, rather than fail half-way through the write."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raw = os.fsencode(str(original))
        raise ValueError(f"{raw!r} (column {column}) is not a UTF-8 name, and manifests are UTF-8: rename it "
                         f"(e.g. `convmv -f latin1 -t utf8`) and rerun; no manifest was written") from None


# --- importers -------------------------------------------------------------------------------


def from_class_folders(root: str | os.PathLike) -> pd.DataFrame:
    """A folder per class: `root/<label>/**/<video>`; every video file below a class folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; expected one sub-folder per class")
    rows = [
        {"path": str(file), "label": class_dir.name}
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for file in sorted(class_dir.rglob("*"))
        if file.suffix.lower() in VIDEO_EXTENSIONS
    ]
    if not rows:
        raise ValueError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found in class folders under {root}")
    return pd.DataFrame(rows)


UCF101_GROUP = re.compile(r"_(g\d+)_c\d+", re.IGNORECASE)


def from_ucf101(splits_dir: str | os.PathLike, videos_dir: str | os.PathLike, split: int = 1) -> pd.DataFrame:
    """UCF101 split lists: classInd.txt, trainlist0N.txt and testlist0N.txt from `splits_dir`.

    Paths in the lists are relative to `videos_dir` (e.g. `ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi`);
    the group is the `gNN` part of the file name, so clips of one source stay on one side.
    """
    splits_dir, videos_dir = Path(splits_dir), Path(videos_dir)
    class_file = splits_dir / "classInd.txt"
    classes = {}
    for number, line in _read_lines(class_file):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ManifestError(class_file, [Problem(number, "-", f"expected 'index name', got {line!r}")])
        classes[parts[0]] = parts[1]
    rows = []
    for split_name, list_name in (("train", f"trainlist{split:02d}.txt"), ("test", f"testlist{split:02d}.txt")):
        for number, line in _read_lines(splits_dir / list_name):
            parts = line.split()
            relative = parts[0]
            label = classes.get(parts[1]) if len(parts) > 1 else relative.split("/")[0]
            if label is None:
                raise ManifestError(splits_dir / list_name, [Problem(number, "label", f"class index {parts[1]} is not in {class_file}")])
            match = UCF101_GROUP.search(relative)
            rows.append({
                "path": str(videos_dir / relative),
                "label": label,
                "split": split_name,
                "group": match.group(1).lower() if match else "",
                "video_id": relative,
            })
    return pd.DataFrame(rows)


def from_path_label_list(list_file: str | os.PathLike, root: str | os.PathLike | None = None, classes: str | os.PathLike | None = None, split: str = "") -> pd.DataFrame:
    """mmaction2-style lists: one `path label` per line, the label an integer index or a name.

    `root` is prepended to relative paths (mmaction2's data_prefix; default the list's folder);
    `classes` is an optional file with one class name per line, mapping index N to line N (0-based).
    """
    list_file = Path(list_file)
    root = Path(root) if root else list_file.parent
    names = [line for _, line in _read_lines(Path(classes))] if classes else None
    rows = []
    for number, line in _read_lines(list_file):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ManifestError(list_file, [Problem(number, "-", f"expected 'path label', got {line!r}")])
        relative, label = parts
        if names is not None:
            if not (label.isascii() and label.isdigit()) or int(label) >= len(names):
                raise ManifestError(list_file, [Problem(number, "label", f"label {label!r} is not an index into {classes} ({len(names)} classes)")])
            label = names[int(label)]
        rows.append({"path": str(root / relative), "label": label, "split": split})
    return pd.DataFrame(rows)


KINETICS_SPLITS = {"train": "train", "training": "train", "val": "val", "validate": "val", "validation": "val", "test": "test", "testing": "test"}


def from_kinetics_csv(csv_file: str | os.PathLike, root: str | os.PathLike) -> pd.DataFrame:
    """Kinetics annotation CSV (label, youtube_id, time_start, time_end, split) plus a video folder.

    Files are found anywhere below `root` by the usual download names, `<id>_<start:06d>_<end:06d>.*`
    or `<id>.*`. Rows without a file are left out and counted in a warning: Kinetics copies always
    miss some videos.
    """
    csv_file = Path(csv_file)
    table = _read_csv(csv_file)
    header = _header(csv_file, table, ("label", "youtube_id", "time_start", "time_end"))
    annotations, problems = _records(table, header, ("label", "youtube_id", "time_start", "time_end", "split"))
    files = {p.stem: p for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS}
    rows, missing = [], 0
    for row in annotations:
        try:
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except (ValueError, OverflowError):
            problems.append(Problem(row["line"], "time_start", f"times {row['time_start']!r} and {row['time_end']!r} are not seconds"))
            continue
        found = files.get(stem) or files.get(row["youtube_id"])
        if found is None:
            missing += 1
            continue
        split = KINETICS_SPLITS.get(row.get("split", "").lower(), "")
        rows.append({"path": str(found), "label": row["label"], "split": split, "video_id": stem})
    if problems:
        raise ManifestError(csv_file, problems)
    if missing:
        log.warning("%s: %d of %d annotated videos have no file under %s and were left out", csv_file, missing, len(annotations), root)
    if not rows:
        raise ValueError(f"none of the {len(annotations)} videos of {csv_file} were found under {root}")
    return pd.DataFrame(rows)


# --- reading text and CSV files: every problem names its line ---------------------------------


def _decode(path: Path) -> str:
    """The file's text (UTF-8, with or without a byte-order mark); ManifestError naming the first bad line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ManifestError(path, [Problem(0, "-", f"cannot read the file ({error.strerror or error})")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ManifestError(path, [Problem(line, "-", f"is not UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8")]) from None


def _read_csv(path: Path) -> list[tuple[int, list[str]]]:
    """Every CSV record with the line it starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(_decode(path), newline=""))
    table, start = [], 1
    try:
        for values in reader:
            table.append((start, values))
            start = reader.line_num + 1
    except csv.Error as error:
        raise ManifestError(path, [Problem(reader.line_num, "-", f"is not valid CSV ({error})")]) from None
    return table


def _header(path: Path, table: list, required: tuple[str, ...]) -> list[str]:
    """The header's column names (trimmed, lower case); ManifestError if one is missing or repeated."""
    if not table:
        raise ManifestError(path, [Problem(0, "-", f"the file is empty; it needs a header row with at least {','.join(required)!r}")])
    header = [name.strip().lower() for name in table[0][1]]
    shown = ",".join(table[0][1])
    if len(shown) > 200:  # a huge header is not echoed whole
        shown = f"{shown[:200]}... ({len(table[0][1])} columns)"
    problems = [Problem(0, name, f"required column is missing (header is {shown!r})") for name in required if name not in header]
    counts = Counter(header)
    problems += [Problem(0, name, "appears more than once in the header") for name in sorted(n for n, count in counts.items() if n and count > 1)]
    if problems:
        raise ManifestError(path, problems)
    return header


def _records(table: list, header: list[str], columns: tuple[str, ...]) -> tuple[list[dict], list[Problem]]:
    """Rows after the header as {column: trimmed value, "line": n}, only `columns`; blank rows skipped."""
    records, problems = [], []
    for line, values in table[1:]:
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            problems.append(Problem(line, "-", f"has {len(values)} fields, the header has {len(header)}"))
            continue
        record = {name: value.strip() for name, value in zip(header, values) if name in columns}
        bad = [name for name, value in record.items() if "\x00" in value]
        if bad:
            problems.append(Problem(line, bad[0], "contains a NUL byte"))
            continue
        records.append({**record, "line": line})
    return records, problems


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


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines, trimmed, with their line numbers; ManifestError for a line with a NUL byte."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    lines = [(number, line.strip()) for number, line in enumerate(_decode(path).split("\n"), start=1) if line.strip()]
    for number, line in lines:
        if "\x00" in line:
            raise ManifestError(path, [Problem(number, "-", "contains a NUL byte")])
    return lines
