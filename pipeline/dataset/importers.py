"""Importers: manifests from the common dataset layouts (a folder per class, UCF101, mmaction2 lists, Kinetics).

Each returns the rows as a DataFrame for `manifest.write_manifest`; a malformed input line is a
`ManifestError` naming it.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pandas as pd

from pipeline.core.errors import InputError
from pipeline.dataset.csv_text import ManifestError, Problem, read_csv_rows, read_header, read_lines, read_records

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".mov",
    ".webm",
    ".ogg",
    ".ogv",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
)


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
        raise InputError(f"no video files ({', '.join(VIDEO_EXTENSIONS)}) found in class folders under {root}")
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
    for number, line in read_lines(class_file):
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ManifestError(class_file, [Problem(number, "-", f"expected 'index name', got {line!r}")])
        classes[parts[0]] = parts[1]
    rows = []
    for split_name, list_name in (("train", f"trainlist{split:02d}.txt"), ("test", f"testlist{split:02d}.txt")):
        for number, line in read_lines(splits_dir / list_name):
            parts = line.split()
            relative = parts[0]
            label = classes.get(parts[1]) if len(parts) > 1 else relative.split("/")[0]
            if label is None:
                raise ManifestError(
                    splits_dir / list_name, [Problem(number, "label", f"class index {parts[1]} is not in {class_file}")]
                )
            match = UCF101_GROUP.search(relative)
            rows.append(
                {
                    "path": str(videos_dir / relative),
                    "label": label,
                    "split": split_name,
                    "group": match.group(1).lower() if match else "",
                    "video_id": relative,
                }
            )
    return pd.DataFrame(rows)


def from_path_label_list(
    list_file: str | os.PathLike,
    root: str | os.PathLike | None = None,
    classes: str | os.PathLike | None = None,
    split: str = "",
) -> pd.DataFrame:
    """mmaction2-style lists: one `path label` per line, the label an integer index or a name.

    `root` is prepended to relative paths (mmaction2's data_prefix; default the list's folder);
    `classes` is an optional file with one class name per line, mapping index N to line N (0-based).
    """
    list_file = Path(list_file)
    root = Path(root) if root else list_file.parent
    names = [line for _, line in read_lines(Path(classes))] if classes else None
    rows = []
    for number, line in read_lines(list_file):
        parts = line.rsplit(maxsplit=1)
        if len(parts) != 2:
            raise ManifestError(list_file, [Problem(number, "-", f"expected 'path label', got {line!r}")])
        relative, label = parts
        if names is not None:
            if not (label.isascii() and label.isdigit()) or int(label) >= len(names):
                raise ManifestError(
                    list_file,
                    [
                        Problem(
                            number, "label", f"label {label!r} is not an index into {classes} ({len(names)} classes)"
                        )
                    ],
                )
            label = names[int(label)]
        rows.append({"path": str(root / relative), "label": label, "split": split})
    return pd.DataFrame(rows)


KINETICS_SPLITS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "validate": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def from_kinetics_csv(csv_file: str | os.PathLike, root: str | os.PathLike) -> pd.DataFrame:
    """Kinetics annotation CSV (label, youtube_id, time_start, time_end, split) plus a video folder.

    Files are found anywhere below `root` by the usual download names, `<id>_<start:06d>_<end:06d>.*`
    or `<id>.*`. Rows without a file are left out and counted in a warning: Kinetics copies always
    miss some videos.
    """
    csv_file = Path(csv_file)
    table = read_csv_rows(csv_file)
    header = read_header(csv_file, table, ("label", "youtube_id", "time_start", "time_end"))
    annotations, problems = read_records(table, header, ("label", "youtube_id", "time_start", "time_end", "split"))
    files = {p.stem: p for p in Path(root).rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS}
    rows, missing = [], 0
    for row in annotations:
        try:
            stem = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except (ValueError, OverflowError):
            problems.append(
                Problem(
                    row["line"], "time_start", f"times {row['time_start']!r} and {row['time_end']!r} are not seconds"
                )
            )
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
        log.warning(
            "%s: %d of %d annotated videos have no file under %s and were left out",
            csv_file,
            missing,
            len(annotations),
            root,
        )
    if not rows:
        raise InputError(f"none of the {len(annotations)} videos of {csv_file} were found under {root}")
    return pd.DataFrame(rows)
