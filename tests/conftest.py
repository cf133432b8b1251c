"""Shared fixtures: the real files in ../shared/data (by reference, never copied) and tiny videos (helpers in
helpers.py)."""

import os

import pytest

from helpers import SHARED, VIDEOS, gradient_clip

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared():
    if not VIDEOS.is_dir():
        pytest.fail(
            f"shared test data not found at {SHARED}; check out ../shared beside the repository or set SHARED_DATA"
        )
    return SHARED


@pytest.fixture
def make_video(tmp_path):
    """Write a tiny real video with PyAV: make_video(name, frames=12, width=64, height=48, seed=0)."""
    from pipeline.dataset.demo import write_clip

    def make(name="clip.mp4", frames=12, width=64, height=48, seed=0, codec="libx264", options=None):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(
            path,
            gradient_clip(frames, width, height, seed),
            fps=10,
            codec=codec,
            options=options if options is not None else {},
        )
        return path

    return make
