"""demo-data and the manifest writers delete or overwrite only what they made, and refuse bad names and headers fast."""

import os
import time

import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_OK
from pipeline.dataset import manifest


def demo_argv(folder, manifest_path, *extra):
    return ["demo-data", "--output", str(folder), "--manifest", str(manifest_path), "--per-class", "1", *extra]


def test_demo_data_deletes_only_its_own_clips(tmp_path):
    demo = tmp_path / "demo"
    assert main(demo_argv(demo, tmp_path / "demo.csv")) == EXIT_OK
    (demo / "my_holiday.mp4").write_bytes(b"mine")  # a user's clip copied into the demo folder
    assert (
        main(demo_argv(demo, tmp_path / "demo.csv", "--seed", "1")) == EXIT_OK
    )  # another seed: the demo's clips are rewritten
    assert (demo / "my_holiday.mp4").read_bytes() == b"mine"
    assert len(list(demo.glob("grow_*.mp4"))) == 1


def test_demo_data_refuses_a_folder_with_a_malformed_stamp(tmp_path, caplog):
    folder = tmp_path / "wedding"
    folder.mkdir()
    (folder / ".render-version").write_text("x")
    (folder / "wedding.mp4").write_bytes(b"mine")
    assert main(demo_argv(folder, tmp_path / "demo.csv")) == EXIT_BAD_INPUT
    assert "is not a demo folder made by this tool" in caplog.text
    assert sorted(path.name for path in folder.iterdir()) == [".render-version", "wedding.mp4"]


def test_manifest_writers_do_not_overwrite_other_files(tmp_path, caplog):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    assert main(demo_argv(tmp_path / "demo", notes)) == EXIT_BAD_INPUT
    assert f"{notes} exists and is not a manifest" in caplog.text and not (tmp_path / "demo").exists()
    (tmp_path / "videos" / "cat").mkdir(parents=True)
    (tmp_path / "videos" / "cat" / "a.mp4").write_bytes(b"")
    assert main(["manifest", "folders", str(tmp_path / "videos"), "-o", str(notes)]) == EXIT_BAD_INPUT
    assert notes.read_text() == "my notes\n"
    old = tmp_path / "old.csv"  # an earlier manifest is replaced
    old.write_text("Path,Label\nx.mp4,dog\n")
    assert main(["manifest", "folders", str(tmp_path / "videos"), "-o", str(old)]) == EXIT_OK
    assert old.read_text().splitlines() == ["path,label", "videos/cat/a.mp4,cat"]


def test_a_failed_write_leaves_the_old_manifest_whole(tmp_path, monkeypatch):
    old = tmp_path / "old.csv"
    old.write_text("path,label\nx.mp4,dog\n")

    def fail(self, path, **kwargs):
        open(path, "w").write("path,la")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", fail)
    with pytest.raises(OSError, match="disk full"):
        manifest.write_manifest(pd.DataFrame({"path": ["a.mp4"], "label": ["cat"]}), old)
    assert old.read_text() == "path,label\nx.mp4,dog\n" and os.listdir(tmp_path) == ["old.csv"]


@pytest.mark.skipif(os.uname().sysname == "Darwin", reason="macOS refuses non-UTF-8 file names")
def test_a_non_utf8_file_name_is_named_and_refused(tmp_path, caplog):
    cat = tmp_path / "videos" / "cat"
    cat.mkdir(parents=True)
    (cat / "good.mp4").write_bytes(b"")
    open(os.path.join(os.fsencode(cat), b"bad\xff.mp4"), "wb").close()
    out = tmp_path / "out.csv"
    out.write_text("path,label\nold.mp4,dog\n")
    assert main(["manifest", "folders", str(tmp_path / "videos"), "-o", str(out)]) == EXIT_BAD_INPUT
    assert r"bad\xff.mp4" in caplog.text and "is not a UTF-8 name" in caplog.text
    assert out.read_text() == "path,label\nold.mp4,dog\n"


def test_a_huge_header_is_refused_fast_and_not_echoed_whole(tmp_path):
    wide = tmp_path / "wide.csv"
    wide.write_text(",".join(f"c{i}" for i in range(100_000)) + ",c1\n")
    start = time.perf_counter()
    with pytest.raises(manifest.ManifestError) as error:
        manifest.read_manifest(wide)
    assert time.perf_counter() - start < 10  # was minutes: header.count in a loop
    assert "(100001 columns)" in str(error.value) and len(str(error.value)) < 2000
    assert "column 'c1': appears more than once" in str(error.value)


@pytest.mark.parametrize(
    "argv", [["predict", "run", "v.mp4", "--run", "x"], ["manifest", "list", "l.txt", "-o", "m.csv", "--ro", "x"]]
)
def test_an_abbreviated_option_is_refused_not_taken_for_another(argv, capsys):
    """`--run` is not `--runtime`: a typo or a half-remembered option must not quietly set another one."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == EXIT_BAD_INPUT and f"unrecognized arguments: {argv[-2]}" in capsys.readouterr().err
