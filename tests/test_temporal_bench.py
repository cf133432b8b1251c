"""The temporal benchmark's task generation (not the benchmark itself, which takes minutes)."""

import numpy as np
import pandas as pd
import pytest

from pipeline.bench.temporal import BenchConfig, build_task
from pipeline.bench.temporal_tasks import FRAMES, SIZE, real_windows, render_clutter, render_motion, write_arrow_clips
from pipeline.extract.decode import Sampling, decode_video, probe_video

from helpers import VIDEOS


@pytest.mark.parametrize("render", [render_motion, render_clutter])
def test_a_backward_clip_is_the_forward_clip_played_in_reverse(render):
    """So the two classes have the same frames and an order-blind model is at chance by construction."""
    for seed in range(4):
        forward, drawn = render(np.random.default_rng([seed]), forward=True)
        backward, _ = render(np.random.default_rng([seed]), forward=False)
        assert forward.shape == (FRAMES, SIZE, SIZE, 3)
        np.testing.assert_array_equal(backward, forward[::-1])
        assert np.abs(forward.astype(int) - backward).mean() > 0.5, drawn  # the clip does change over time


def test_motion_task_writes_balanced_clips_a_manifest_and_what_each_clip_shows(tmp_path):
    manifest = build_task("motion", tmp_path / "motion", BenchConfig(motion_clips=40))
    rows = pd.read_csv(manifest)
    assert len(rows) == 40 and rows["label"].value_counts().to_dict() == {"forward": 20, "backward": 20}
    assert rows["group"].is_unique  # every clip is its own group: no clip straddles splits
    details = pd.read_csv(tmp_path / "motion" / "motion-clips.csv")
    assert set(details["motion"]) <= {"translate", "rotate", "scale", "brightness"} and details["motion"].nunique() >= 3
    first = tmp_path / "motion" / rows["path"][0]
    assert probe_video(first)[0] == FRAMES
    written = first.stat().st_mtime_ns
    build_task(
        "motion", tmp_path / "motion", BenchConfig(motion_clips=40)
    )  # a rerun keeps the clips, so their store keys hold
    assert first.stat().st_mtime_ns == written
    build_task("motion", tmp_path / "motion", BenchConfig(motion_clips=40, seed=1))  # another seed rewrites them
    assert first.stat().st_mtime_ns != written
    (tmp_path / "mine" / "motion" / "clips").mkdir(parents=True)
    (tmp_path / "mine" / "motion" / "clips" / "keep.mp4").write_bytes(b"user data")
    with pytest.raises(ValueError, match="not written by temporal-bench"):
        build_task("motion", tmp_path / "mine" / "motion", BenchConfig(motion_clips=40))
    assert (tmp_path / "mine" / "motion" / "clips" / "keep.mp4").read_bytes() == b"user data"


def test_a_missing_shared_data_folder_is_refused_before_any_work(tmp_path):
    from pipeline.cli import main
    from pipeline.cli.common import EXIT_BAD_INPUT

    assert (
        main(["temporal-bench", "--output", str(tmp_path / "out"), "--shared-data", str(tmp_path / "nowhere")])
        == EXIT_BAD_INPUT
    )
    assert not (tmp_path / "out").exists()


def test_windows_fit_the_video_overlap_by_at_most_half_and_short_videos_have_none():
    windows = real_windows(914, 29.97, 12)  # 3 frames apart at speed 1, 6 at speed 2: 12 windows each
    assert sorted({step for step, _ in windows}) == [3, 6] and len(windows) == 24
    for step in (3, 6):
        span = (FRAMES - 1) * step + 1
        starts = [start for s, start in windows if s == step]
        assert starts[0] == 0 and starts[-1] == 914 - span and min(np.diff(starts)) >= span // 2
    assert real_windows(36, 30.0, 5) == [(2, 0)]  # too short for step 3: the step shrinks to fit one window, taken once
    assert real_windows(6, 12.0, 5) == [] and real_windows(FRAMES, 30.0, 5) == [(1, 0)]
    assert len(real_windows(100, 10.0, 12, speeds=(1,))) == 1 + (100 - FRAMES) // (
        FRAMES // 2
    )  # overlapping by half at most


def test_arrow_windows_are_written_forward_and_reversed_grouped_by_source(shared, tmp_path):
    videos = tmp_path / "videos"
    for name in ("imageio/realshort.mp4", "decord/video_0.mov"):  # 36 frames: one window; 3 frames: none
        (videos / name).parent.mkdir(parents=True, exist_ok=True)
        (videos / name).symlink_to(VIDEOS / name)
    (tmp_path / "clips").mkdir()
    rows = pd.DataFrame(write_arrow_clips(tmp_path / "clips", videos, per_video=3, image_size=64))
    assert sorted(rows["label"]) == ["forward", "reversed"] and set(rows["group"]) == {"imageio/realshort"}
    forward, backward = (
        decode_video(rows.set_index("label").loc[label, "path"], 64, Sampling("all")).frames.astype(int)
        for label in ("forward", "reversed")
    )
    assert len(forward) == FRAMES and np.abs(forward - backward[::-1]).mean() < 3 < np.abs(forward - backward).mean()


def test_the_output_folder_must_be_the_benchmarks(tmp_path, caplog, monkeypatch):
    from pipeline.bench import temporal as temporal_bench
    from pipeline.bench.temporal import claim_output
    from pipeline.cli import main
    from pipeline.cli.common import EXIT_BAD_INPUT
    from pipeline.runs import folders

    monkeypatch.setattr(
        temporal_bench, "build_task", lambda *args: pytest.fail("the benchmark started in a folder it does not own")
    )
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "results.csv").write_text("my results\n")
    argv = ["temporal-bench", "--tasks", "motion", "--output"]
    assert main([*argv, str(mine)]) == EXIT_BAD_INPUT
    assert f"{mine} is not empty and is not a reports folder made by this tool" in caplog.text
    assert [path.name for path in mine.iterdir()] == ["results.csv"]
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert main([*argv, str(a_file)]) == EXIT_BAD_INPUT and f"{a_file} exists and is not a directory" in caplog.text
    earlier = tmp_path / "earlier"  # an earlier version's output, no marker: taken over and marked
    (earlier / "motion" / "clips").mkdir(parents=True)
    (earlier / "motion" / "clips" / ".render-version").write_text("1 motion seed=0 size=96")
    claim_output(earlier)
    claim_output(tmp_path / "new")
    assert folders.made_by_tool(earlier, "reports") and folders.made_by_tool(tmp_path / "new", "reports")
