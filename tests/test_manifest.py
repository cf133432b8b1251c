"""Manifest validation (every problem with its line) and the dataset-layout importers."""

import pandas as pd
import pytest

from pipeline.dataset import importers
from pipeline.dataset import manifest as m


def write(path, text):
    path.write_text(text)
    return path


def test_valid_manifest_resolves_relative_paths(tmp_path, make_video):
    make_video("videos/a.mp4")
    make_video("videos/b.mp4", seed=1)
    csv = write(tmp_path / "m.csv", "path,label,split,group\nvideos/a.mp4,run,train,g1\nvideos/b.mp4,jump,TEST,g2\n")
    frame = m.read_manifest(csv)
    assert list(frame["label"]) == ["run", "jump"]
    assert list(frame["split"]) == ["train", "test"]
    assert frame["path"][0] == str((tmp_path / "videos/a.mp4").resolve())
    assert list(frame["video_id"]) == ["videos/a.mp4", "videos/b.mp4"]  # defaults to the path as written
    assert list(frame["line"]) == [2, 3]


def test_every_problem_is_reported_with_its_line(tmp_path, make_video):
    make_video("a.mp4")
    csv = write(
        tmp_path / "m.csv",
        "path,label,split,video_id\n"
        "a.mp4,run,train,x\n"
        "missing.mp4,run,train,y\n"
        "a.mp4,,train,z\n"
        "a.mp4,run,holdout,w\n"
        "a.mp4,run,train,x\n",
    )
    with pytest.raises(m.ManifestError) as caught:
        m.read_manifest(csv)
    text = str(caught.value)
    assert "line 3, column 'path': file not found" in text and "--skip-missing" in text
    assert "line 4, column 'label': is empty" in text
    assert "line 5, column 'split': is 'holdout'" in text
    assert "line 6, column 'video_id': duplicate id 'x' (first seen on line 2)" in text
    assert len(caught.value.problems) == 4


def test_skip_missing_drops_rows_instead(tmp_path, make_video):
    make_video("a.mp4")
    csv = write(tmp_path / "m.csv", "path,label\na.mp4,run\nmissing.mp4,run\n")
    frame = m.read_manifest(csv, skip_missing=True)
    assert list(frame["line"]) == [2]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("video,label\nx.mp4,a\n", "column 'path': required column is missing"),
        ("", "the file is empty"),
        ("path,label\n", "has no video rows"),
        ("path,label\na.mp4,b,c\n", "line 2, column '-': has 3 fields"),
    ],
)
def test_structural_problems(tmp_path, text, expected):
    with pytest.raises(m.ManifestError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        m.read_manifest(write(tmp_path / "m.csv", text))


def test_unreadable_csv(tmp_path):
    binary = tmp_path / "m.csv"
    binary.write_bytes(b"path,label\na.mp4,b\n\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(
        m.ManifestError, match="line 3, column '-': is not UTF-8 \\(byte 0xff\\); save the file as UTF-8"
    ):
        m.read_manifest(binary)
    with pytest.raises(m.ManifestError, match="cannot read the file \\(No such file or directory\\)"):
        m.read_manifest(tmp_path / "absent.csv")


def test_class_folders_importer_round_trip(tmp_path, make_video):
    make_video("data/run/a.mp4")
    make_video("data/run/sub/b.avi", codec="mpeg4")
    make_video("data/jump/c.mkv")
    (tmp_path / "data/jump/notes.txt").write_text("not a video")
    frame = importers.from_class_folders(tmp_path / "data")
    assert sorted(frame["label"]) == ["jump", "run", "run"]
    out = m.write_manifest(frame, tmp_path / "data/manifest.csv")
    assert "jump/c.mkv" in out.read_text()  # relative to the manifest
    assert len(m.read_manifest(out)) == 3


def test_ucf101_importer_takes_group_from_name(tmp_path):
    splits = tmp_path / "splits"
    splits.mkdir()
    write(splits / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    write(
        splits / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g09_c02.avi 2\n"
    )
    write(splits / "testlist01.txt", "Archery/v_Archery_g01_c01.avi\n")
    frame = importers.from_ucf101(splits, tmp_path / "UCF-101", split=1)
    assert list(frame["split"]) == ["train", "train", "test"]
    assert list(frame["group"]) == ["g08", "g09", "g01"]
    assert list(frame["label"]) == ["ApplyEyeMakeup", "Archery", "Archery"]
    assert frame["path"][2].endswith("UCF-101/Archery/v_Archery_g01_c01.avi")


def test_path_label_list_with_class_names(tmp_path):
    write(tmp_path / "classes.txt", "run\njump\n")
    write(tmp_path / "train.txt", "clips/a.mp4 1\nclips/with space.mp4 0\n")
    frame = importers.from_path_label_list(tmp_path / "train.txt", classes=tmp_path / "classes.txt", split="train")
    assert list(frame["label"]) == ["jump", "run"]
    assert frame["path"][1].endswith("clips/with space.mp4")
    write(tmp_path / "bad.txt", "clips/a.mp4 7\n")
    with pytest.raises(m.ManifestError, match="line 1, column 'label': label '7' is not an index"):
        importers.from_path_label_list(tmp_path / "bad.txt", classes=tmp_path / "classes.txt")


def test_kinetics_importer_finds_files_and_counts_missing(tmp_path, make_video, caplog):
    make_video("k400/train/abseiling/abc123_000010_000020.mp4")
    make_video("k400/val/xyz789.mp4")
    write(
        tmp_path / "k.csv",
        "label,youtube_id,time_start,time_end,split\n"
        "abseiling,abc123,10,20,train\nair drumming,xyz789,0,10,validate\nabseiling,gone00,5,15,train\n",
    )
    frame = importers.from_kinetics_csv(tmp_path / "k.csv", tmp_path / "k400")
    assert list(frame["split"]) == ["train", "val"]
    assert list(frame["label"]) == ["abseiling", "air drumming"]
    assert "1 of 3 annotated videos have no file" in caplog.text
    assert isinstance(frame, pd.DataFrame)


def test_a_quote_in_a_column_name_keeps_the_problem_text_unambiguous(tmp_path):
    """Found by the fuzzer: a header `','` named a column `'''`; the quote inside is written `\\x27`."""
    (tmp_path / "m.csv").write_bytes(b"','")
    with pytest.raises(m.ManifestError) as refused:
        m.read_manifest(tmp_path / "m.csv")
    assert "header, column '\\x27': appears more than once in the header" in str(refused.value)
