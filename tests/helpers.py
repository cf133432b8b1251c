"""Helpers shared by the tests: where the shared test data is, tiny clips, toy stores, a tiny stage-one setup.

The real files of ../shared/data are used by reference, never copied (`SHARED_DATA` points elsewhere).
"""

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd

from pipeline import store
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.backbones import Weights, load_backbone
from pipeline.extract.config import FeatureConfig

SHARED = Path(
    os.environ.get("SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data")
).resolve()  # tests chdir
VIDEOS = SHARED / "videos"
BROKEN = VIDEOS / "broken"
WEIGHTS_FILE = SHARED / "weights" / "mobilenet_v2_1.0_no_top_dogbreeds.weights.h5"
DIGITS = SHARED / "digits" / "mnist_idx"

# the smallest stage one that runs a real CNN: random VGG16 at 32 px, 4 frames per video
TINY_CONFIG = FeatureConfig(backbone="vgg16", weights="none", image_size=32, sampling="uniform:4", precision="float32")


def tiny_backbone():
    return load_backbone(
        TINY_CONFIG.backbone, Weights("none"), TINY_CONFIG.image_size, batch_size=16, precision="float32"
    )


def manifest_of(tmp_path, make_video, names):
    """A read manifest of tiny videos named `names` (made with the `make_video` fixture), two labels."""
    paths = [make_video(name, seed=i) for i, name in enumerate(names)]
    csv = tmp_path / "m.csv"
    pd.DataFrame({"path": [str(p) for p in paths], "label": [f"c{i % 2}" for i in range(len(paths))]}).to_csv(
        csv, index=False
    )
    return read_manifest(csv)


def manifest_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A path,label manifest of `rows` at `path`."""
    pd.DataFrame(rows, columns=["path", "label"]).to_csv(path, index=False)
    return path


def gradient_clip(frames: int = 12, width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """A small moving-gradient clip whose frames all differ."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(0, 255, 3)
    return np.stack(
        [
            np.clip(
                base + 60 * np.sin((xx + 4 * i) / 7.0)[..., None] + 40 * np.cos((yy - 3 * i) / 5.0)[..., None], 0, 255
            ).astype(np.uint8)
            for i in range(frames)
        ]
    )


FEATURE_CONFIG = {"backbone": "toy", "weights": "none", "image_size": 32, "sampling": "all"}


def write_store(
    path, labels, lengths=None, splits=None, groups=None, dim=6, seed=0, fallback="", failures=(), feature_config=None
):
    """A feature store written with the store module, one video per entry of `labels` (recorded as made with
    `feature_config`, a dict; default: a toy backbone `predict` cannot rebuild).

    Each video has a random per-video offset (appearance) plus a ramp on feature 0 that rises
    for even class indices and falls for odd ones: the same frames in the other order, so only
    a model that reads the order can tell the classes apart.
    """
    rng = np.random.default_rng(seed)
    classes = sorted(set(labels))
    lengths = lengths or [8] * len(labels)
    shard, rows = store.Shard(), []
    for i, label in enumerate(labels):
        row = store.VideoRow(
            f"v{i:03d}",
            f"key{i}",
            f"/videos/v{i:03d}.mp4",
            label,
            (splits or [""] * len(labels))[i],
            (groups or [""] * len(labels))[i],
            order=i,
        )
        rows.append(row)
        steps = lengths[i]
        ramp = np.linspace(-1, 1, steps) * (1 if classes.index(label) % 2 == 0 else -1)
        features = rng.normal(0, 1, dim) + rng.normal(0, 0.1, (steps, dim))
        features[:, 0] += 2 * ramp
        features[:, 1] += classes.index(label) // 2  # pairs of classes differ in appearance, like the demo
        shard.add_video(
            row, features.astype(np.float32), np.arange(steps), np.arange(steps) / 10.0, steps, 10.0, 32, 32
        )
    for i, message in enumerate(failures):
        rows.append(store.VideoRow(f"bad{i}", f"badkey{i}", f"/videos/bad{i}.mp4", "?", order=len(labels) + i))
        shard.add_failure(rows[-1], "open", "DecodeError", message)
    merge(path, shard, rows, dim, {"feature_config": feature_config or FEATURE_CONFIG, "fallback": fallback})
    return path


def merge(path, shard, rows, dim, attrs):
    """Write `shard` as one run's shard and merge it into the store at `path` for the manifest `rows`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with store.shard_run(path) as folder:
        store.write_shard(folder, shard, dim, "float32")
    store.merge_shards(path, attrs, rows)


def run_cli(*args, env=None):
    """`python -m pipeline ARGS` as a finished process (returncode, stdout, stderr), run in this process so that no
    new TensorFlow import is paid; with `env`, in a subprocess of its own (an environment is per process)."""
    args = [str(arg) for arg in args]
    if env is not None:
        return subprocess.run([sys.executable, "-m", "pipeline", *args], capture_output=True, text=True, env=env)
    from pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    logger = logging.getLogger("pipeline")
    level = logger.level
    logger.setLevel(logging.DEBUG if {"-v", "--verbose"} & set(args) else logging.INFO)  # as a fresh process's
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as stop:  # --help, or argparse refusing the options
                code = stop.code if isinstance(stop.code, int) else 2
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
