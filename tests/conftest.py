"""Shared fixtures: the real files in ../shared/data (by reference, never copied) and tiny videos (helpers in
helpers.py)."""

import json
import os

import pytest

from helpers import SHARED, VIDEOS, gradient_clip, write_store

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def shared():
    if not VIDEOS.is_dir():
        pytest.skip(
            f"shared test data not found at {SHARED}: check out ../shared beside the repository or set SHARED_DATA"
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


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory):
    """One trained toy run shared by the report and model-file tests (read it; copy it before changing it): a GRU and
    both baselines on four classes (the baselines' multinomial case), a failure and an offline fallback recorded."""
    from pipeline.classify.config import TrainConfig
    from pipeline.classify.models import SequenceModelConfig
    from pipeline.classify.train import train

    root = tmp_path_factory.mktemp("toy")
    store_path = write_store(
        root / "features" / "toy" / "toy.h5",
        ["a", "b", "c", "d"] * 12,
        failures=["moov atom not found"],
        fallback="random weights, offline",
    )
    config = TrainConfig(
        models=("gru", "mean", "single-frame"), seq_len=8, epochs=2, network=SequenceModelConfig(units=4)
    )
    result = train(store_path, root / "reports" / "toy-run", config, progress=False)
    recorded = result.run_dir / "model" / "config.json"  # the toy store lacks what predict reads of a real one
    settings = json.loads(recorded.read_text())
    settings["feature_config"].update(max_frames=512, crop="center")
    recorded.write_text(json.dumps(settings))
    return result
