"""Fuzzing the manifest reader and every importer: any input either parses or is refused with
ManifestError naming the file and the line (exit 2 on the command line), never a traceback."""

import re
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.dataset import importers
from pipeline.dataset import manifest as m

from helpers import run_cli

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
PROBLEM = re.compile(
    r"line [1-9]\d*, column '[^']*': |header, column '[^']*': (required column is missing|appears more than once|"
    r"the file is empty|has no video rows|cannot read the file)"
)  # only problems of the whole file have no line

CELLS = st.one_of(
    st.sampled_from(
        [
            "a.mp4",
            "sub/b.mp4",
            "missing.mp4",
            "run",
            "train",
            "TEST",
            "val",
            "holdout",
            "",
            " ",
            '"',
            '""',
            "x,y",
            "\x00",
            "a.mp4\x00",
            "\r",
            "\n",
            "\ufeff",
            "é",
            "1",
            "1e400",
            "nan",
            "-5",
            "abc",
            "abc_000001_000002",
        ]
    ),
    st.text(max_size=20),
    st.integers(130_000, 140_000).map(lambda n: "x" * n),  # past the csv module's field size limit
)
KNOWN = [
    "path",
    "label",
    "split",
    "group",
    "video_id",
    "Path",
    " LABEL ",
    "line",
    "",
    "extra",
    "youtube_id",
    "time_start",
    "time_end",
]


@st.composite
def csv_bytes(draw):
    """A CSV-like file: known and random header names (repeated too), quoted and raw cells, any line ending, BOM,
    encoding."""
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))

    def cell(text):
        return '"' + text.replace('"', '""') + '"' if draw(st.booleans()) else text

    header = draw(st.lists(st.one_of(st.sampled_from(KNOWN), st.text(max_size=8)), max_size=7))
    rows = draw(st.lists(st.lists(CELLS, max_size=7), max_size=6))
    text = newline.join(",".join(cell(value) for value in row) for row in [header, *rows])
    if draw(st.booleans()):
        text += newline
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    return text.encode(encoding, errors="replace")


FILES = st.one_of(csv_bytes(), st.binary(max_size=400))


def parsed_or_refused(call, path: Path):
    """Run an importer or the reader: a DataFrame, or a ManifestError whose every problem names the file and line."""
    try:
        return call()
    except m.ManifestError as error:
        assert error.problems
        for problem in error.problems:
            assert PROBLEM.match(str(problem)), str(problem)
        assert all(line.startswith(f"  {path}: ") for line in str(error).splitlines()[1:51]), str(error)
        return None


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "a.mp4").write_bytes(b"not decoded here")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/b.mp4").write_bytes(b"")
    return tmp_path


@FUZZ
@given(data=FILES, skip_missing=st.booleans())
def test_read_manifest(folder, data, skip_missing):
    path = folder / "m.csv"
    path.write_bytes(data)
    frame = parsed_or_refused(lambda: m.read_manifest(path, skip_missing=skip_missing), path)
    if frame is not None:
        assert len(frame) and list(frame.columns) == ["video_id", "path", "label", "split", "group", "line"]
        assert frame["label"].str.len().min() > 0 and frame["video_id"].is_unique
        assert all(Path(p).is_file() for p in frame["path"])


@FUZZ
@given(data=FILES)
def test_kinetics_importer(folder, data):
    path = folder / "k.csv"
    path.write_bytes(data)
    (folder / "k400").mkdir(exist_ok=True)
    (folder / "k400/abc_000001_000002.mp4").write_bytes(b"")
    try:
        frame = parsed_or_refused(lambda: importers.from_kinetics_csv(path, folder / "k400"), path)
    except ValueError as error:  # not a problem of one line: no annotated video has a file
        assert (
            not isinstance(error, m.ManifestError) and str(error).startswith("none of the") and str(path) in str(error)
        )
        return
    if frame is not None:
        assert list(frame["video_id"]) == ["abc_000001_000002"] * len(frame)


@FUZZ
@given(
    lines=st.one_of(st.binary(max_size=300), csv_bytes()),
    classes=st.one_of(st.none(), st.binary(max_size=100), csv_bytes()),
)
def test_path_label_list_importer(folder, lines, classes):
    list_file, class_file = folder / "list.txt", folder / "classes.txt"
    list_file.write_bytes(lines)
    if classes is not None:
        class_file.write_bytes(classes)
    try:
        frame = importers.from_path_label_list(list_file, classes=class_file if classes is not None else None)
    except m.ManifestError as error:
        assert all(PROBLEM.match(str(problem)) for problem in error.problems) and error.path in (
            str(list_file),
            str(class_file),
        )
        return
    assert isinstance(frame, pd.DataFrame)


@FUZZ
@given(class_ind=FILES, train=FILES, test=FILES)
def test_ucf101_importer(folder, class_ind, train, test):
    splits = folder / "splits"
    splits.mkdir(exist_ok=True)
    for name, data in (("classInd.txt", class_ind), ("trainlist01.txt", train), ("testlist01.txt", test)):
        (splits / name).write_bytes(data)
    try:
        frame = importers.from_ucf101(splits, folder / "UCF-101", split=1)
    except m.ManifestError as error:
        assert all(PROBLEM.match(str(problem)) for problem in error.problems) and Path(error.path).parent == splits
        return
    assert set(frame.get("split", pd.Series(dtype=str))) <= {"train", "test"}


NAMES = st.text(
    st.characters(blacklist_characters="/\x00", blacklist_categories=("Cs",)), min_size=1, max_size=30
).filter(lambda name: name not in (".", "..") and len(name.encode()) < 200)


@settings(max_examples=30, deadline=None)
@given(names=st.lists(NAMES, min_size=1, max_size=4, unique=True))
def test_class_folders_importer_round_trip(names):
    """Any folder names (commas, quotes, newlines, BOMs, spaces) write a manifest that reads back or is refused by
    line."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        for number, name in enumerate(names):
            (root / name).mkdir(parents=True)
            (root / name / f"v{number}.mp4").write_bytes(b"")
        path = m.write_manifest(importers.from_class_folders(root), root / "manifest.csv")
        frame = parsed_or_refused(lambda: m.read_manifest(path), path)
        if frame is not None:
            assert sorted(frame["label"]) == sorted(name.strip() for name in names)


@pytest.mark.parametrize(
    "data, where",
    [
        (b"path,label\na.mp4,run\n\xe9t\xe9.mp4,run\n", "line 3, column '-': is not UTF-8"),
        (b"path,label,label\na.mp4,run,walk\n", "header, column 'label': appears more than once"),
        (b"path,label\na.mp4\x00,run\n", "line 2, column 'path': contains a NUL byte"),
        (
            b'path,label\na.mp4,"' + b"x" * 200_000 + b'"\n',
            "line 2, column '-': is not valid CSV (field larger than field limit",
        ),
    ],
)
def test_cli_refuses_with_the_line_and_exit_2(tmp_path, data, where):
    (tmp_path / "a.mp4").write_bytes(b"")
    (tmp_path / "m.csv").write_bytes(data)
    result = run_cli("manifest", "check", tmp_path / "m.csv")
    assert result.returncode == 2 and where in result.stderr and "Traceback" not in result.stderr, result.stderr
