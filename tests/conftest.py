"""Shared fixtures: the real files in ../shared/data (by reference, never copied) and tiny videos."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(os.environ.get("SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
VIDEOS = SHARED / "videos"
BROKEN = VIDEOS / "broken"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_no_top_dogbreeds.weights.h5"
DIGITS = SHARED / "digits" / "mnist_idx"


@pytest.fixture(scope="session")
def shared():
    if not VIDEOS.is_dir():
        pytest.fail(f"shared test data not found at {SHARED}; check out ../shared beside the repository or set SHARED_DATA")
    return SHARED


def gradient_clip(frames: int = 12, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A small moving-gradient clip whose frames all differ."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, 3)
    return np.stack([
        np.clip(base + 60 * np.sin((xx + 4 * i) / 7.0)[..., None] + 40 * np.cos((yy - 3 * i) / 5.0)[..., None], 0, 255).astype(np.uint8)
        for i in range(frames)
    ])


@pytest.fixture
def make_video(tmp_path):
    """Write a tiny real video with PyAV: make_video(name, frames=12, width=64, height=48, seed=0)."""
    from pipeline.demo_data import write_clip

    def make(name="clip.mp4", frames=12, width=64, height=48, seed=0, codec="libx264", options=None):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        write_clip(path, gradient_clip(frames, width, height, seed), fps=10, codec=codec, options=options if options is not None else {})
        return path

    return make
