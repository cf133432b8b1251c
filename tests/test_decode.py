"""Decoding real files of every container and codec, sampling policies, and the broken files."""

import numpy as np
import pytest

from pipeline.extract.decode import DecodeError, Sampling, decode_video

from helpers import BROKEN, VIDEOS

CLEAN = sorted(p for p in VIDEOS.glob("*/*") if p.parent.name != "broken")
FOUR = Sampling.parse("uniform:4")


def test_sampling_policies():
    assert Sampling.parse("uniform:4").indices(100, 25).tolist() == [12, 37, 62, 87]
    assert Sampling.parse("uniform:8").indices(3, 30).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short: repeats
    assert Sampling.parse("stride:10").indices(35, 25).tolist() == [0, 10, 20, 30]
    assert Sampling.parse("all").indices(5, 25).tolist() == [0, 1, 2, 3, 4]
    assert Sampling.parse("fps:2").indices(60, 30).tolist() == [0, 15, 30, 45]
    assert Sampling.parse("fps:2.5").indices(25, 10).tolist() == [0, 4, 8, 12, 16, 20, 24]
    capped = Sampling.parse("all", max_frames=4).indices(1000, 25)
    assert capped.tolist() == [125, 375, 625, 875]  # thinned over the whole video, not truncated
    assert str(Sampling.parse("FPS:2.5")) == "fps:2.5"


@pytest.mark.parametrize("spec", ["uniform", "uniform:0", "uniform:2.5", "fps:0", "every:3", "all:3", ""])
def test_bad_sampling_specs(spec):
    with pytest.raises(ValueError, match="sampling"):
        Sampling.parse(spec)


@pytest.mark.parametrize("path", CLEAN, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_clean_shared_video_decodes(shared, path):
    video = decode_video(path, 48, FOUR)
    assert video.frames.shape == (4, 48, 48, 3) and video.frames.dtype == np.uint8
    assert video.frames.std() > 1  # real picture content, not a blank buffer
    assert np.all(np.diff(video.frame_index) >= 0) and video.frame_index.max() < video.total_frames
    assert np.all(np.diff(video.timestamps) >= 0)


def test_rotation_metadata_is_applied(shared):
    upright = decode_video(VIDEOS / "decord/video_0.mov", 32, FOUR)
    turned = decode_video(VIDEOS / "decord/video_90.mov", 32, FOUR)
    assert (upright.width, upright.height) == (568, 320)
    assert (turned.width, turned.height) == (320, 568)


def test_theora_frame_count_follows_decord(shared):
    assert decode_video(VIDEOS / "mdn_flower/flower.ogg", 32, FOUR).total_frames == 127


def test_crop_policies_and_timestamps(shared):
    center = decode_video(VIDEOS / "mmaction2/test.mp4", 64, Sampling.parse("uniform:3"))
    squash = decode_video(VIDEOS / "mmaction2/test.mp4", 64, Sampling.parse("uniform:3"), crop="squash")
    assert center.frames.shape == squash.frames.shape == (3, 64, 64, 3)
    assert not np.array_equal(center.frames, squash.frames)
    assert center.frame_index.tolist() == [50, 150, 250]
    np.testing.assert_allclose(center.timestamps, center.frame_index / 30.0, atol=0.04)


def test_444_chroma_tiny_video_decodes_when_scaled(shared):
    """At its native 16x16 decord returns 6 garbage channels; scaled to the target it is correct."""
    video = decode_video(BROKEN / "sxplayer_test_h264_444_16x16.mkv", 32, FOUR)
    assert video.total_frames == 4096 and video.frames.shape == (4, 32, 32, 3)


def test_unordered_pts_decodes(shared):
    video = decode_video(BROKEN / "decord_unordered_pts.mov", 32, FOUR)
    assert video.total_frames == 4 and video.frames.min() > 200  # every frame is white


@pytest.mark.parametrize(
    "name, stage, reason",
    [
        ("Megamind_is_html.avi", "open", "HTML"),
        ("imageio_test.webm", "open", "metadata is broken"),
        ("opencv_output_truncated_xvid.avi", "open", "metadata is broken"),
        ("decord_corrupted.mp4", "decode", "frame 29 of 50 cannot be decoded"),
    ],
)
def test_broken_shared_files_fail_with_a_reason(shared, name, stage, reason):
    with pytest.raises(DecodeError) as caught:
        decode_video(BROKEN / name, 32, Sampling.parse("uniform:16"))
    assert caught.value.stage == stage and reason in caught.value.reason


def test_missing_empty_and_truncated_files(tmp_path, make_video):
    with pytest.raises(DecodeError) as caught:
        decode_video(tmp_path / "nope.mp4", 32, FOUR)
    assert caught.value.stage == "missing"
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(DecodeError) as caught:
        decode_video(tmp_path / "empty.mp4", 32, FOUR)
    assert caught.value.stage == "empty"
    good = make_video("good.mp4", frames=30)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DecodeError) as caught:
        decode_video(cut, 32, FOUR)
    assert caught.value.stage in ("open", "decode") and caught.value.reason


def test_generated_codecs_decode(make_video):
    """(VP8/WebM is covered by the real flower.webm: once decord's FFmpeg is loaded, PyAV cannot encode VP8.)"""
    for name, codec, options in (("b.avi", "mpeg4", {}), ("c.mkv", "libx264", {}), ("d.mov", "libx264", {})):
        video = decode_video(make_video(name, codec=codec, options=options), 32, FOUR)
        assert video.frames.shape == (4, 32, 32, 3)


@pytest.mark.parametrize("name", ["mmaction2/test.mp4", "video_features/v_ZNVhz7ctTq0.mp4", "decord/video_90.mov"])
def test_seek_and_sequential_reads_give_the_same_frames(shared, name):
    sampling = Sampling.parse("uniform:6")
    seek = decode_video(VIDEOS / name, 48, sampling, strategy="seek")
    sequential = decode_video(VIDEOS / name, 48, sampling, strategy="sequential")
    auto = decode_video(VIDEOS / name, 48, sampling)
    np.testing.assert_array_equal(seek.frames, sequential.frames)
    np.testing.assert_array_equal(seek.frames, auto.frames)


def test_sequential_read_reports_the_corrupt_frame(shared):
    with pytest.raises(DecodeError, match="frame 29 of 50"):
        decode_video(BROKEN / "decord_corrupted.mp4", 32, Sampling.parse("uniform:16"), strategy="sequential")
