"""`bench`: the store rows run through the real part (in its own process) and land in bench.json and the
README table."""

import json

import pytest

from pipeline.bench import stage_one as bench


@pytest.mark.slow
def test_store_rows_of_a_store_only_bench_are_written_and_tabled(tmp_path):
    output = tmp_path / "bench.json"
    results = bench.run_all([], "", "", output, only=("store_*",), store_sizes="1000,2000")
    written = json.loads(output.read_text())
    assert written == results
    assert set(written) == {f"store_{kind}_{size}k_s" for kind in ("add10", "copy_merge") for size in (1, 2)} | {
        "store_noop_2k_s"
    }
    for row in written.values():
        assert (
            row["seconds"] > 0
            and len(row["runs"]) == bench.REPEATS
            and row["note"].startswith(f"median of {bench.REPEATS}")
        )
    assert "2,000 videos" in written["store_add10_2k_s"]["note"]
    table = bench.table(written)
    assert "| store_add10_1k_s |" in table and "| store_noop_2k_s |" in table


def test_bench_videos_are_each_file_once_without_broken_or_hidden_ones(tmp_path):
    from pipeline.cli.bench import _bench_videos

    (tmp_path / "a" / "deeper").mkdir(parents=True)
    (tmp_path / "broken").mkdir()
    for name in ("top.mp4", "a/a1.mp4", "a/deeper/too_deep.mp4", "broken/bad.mp4", "._top.mp4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.mp4").mkdir()
    (tmp_path / "link.mp4").symlink_to(tmp_path / "a" / "a1.mp4")
    (tmp_path / "linkdir").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "bad_link.mp4").symlink_to(tmp_path / "broken" / "bad.mp4")
    (tmp_path / "dangling.mp4").symlink_to(tmp_path / "nowhere.mp4")
    assert _bench_videos(tmp_path) == [str(tmp_path / "a" / "a1.mp4"), str(tmp_path / "top.mp4")]


def test_only_patterns_that_match_no_row_are_refused(tmp_path):
    assert (
        bench.store_only(("store_*",)) and not bench.store_only(("*",)) and not bench.store_only(("store_*", "cnn_*"))
    )
    demo = tmp_path / "demo.csv"
    demo.write_text("path,label\nv.mp4,a\n")
    with pytest.raises(ValueError, match="matches no row.*cnn_tensorflow"):
        bench.run_all([], str(demo), "", tmp_path / "bench.json", only=("nomatch",))
    assert not (tmp_path / "bench.json").exists()
