"""The measurements of `bench`, each run in a process of its own (`python -m pipeline.bench.parts NAME ARGS...`),
which prints one JSON line: frames/s, seconds and its peak memory."""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.bench.store import part_store
from pipeline.core.atomic import replacing

SIZE, SAMPLING, BATCH = 224, "uniform:16", 32


def _videos(manifest: str) -> list[str]:
    return list(pd.read_csv(manifest)["path"])


def _peak_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # kilobytes on Linux; the largest child, not their sum


def _weights(value: str):
    from pipeline.extract.backbones import Weights

    return Weights.parse(value)


def _part_cnn(
    manifest: str, weights: str, precision: str, runtime: str, backbone: str = "mobilenet_v2", videos: int | None = None
) -> dict:
    from pipeline.extract.backbones import load_backbone, resolve_precision

    frames = _sampled_frames(manifest, int(videos) if videos else None)
    model = load_backbone(
        backbone, _weights(weights), SIZE, BATCH, precision, runtime
    )  # converted (once, cached) before timing
    model.embed(frames[:BATCH])  # trace once
    started = time.perf_counter()
    features = model.embed(frames)
    seconds = time.perf_counter() - started
    result = {
        "frames_per_s": len(frames) / seconds,
        "frames": len(frames),
        "runtime": model.runtime,
        "note": f"{backbone}, {resolve_precision(precision, backbone)}, {model.runtime}",
    }
    if backbone == "vgg16" and precision == "bfloat16":
        reference = load_backbone(backbone, _weights(weights), SIZE, BATCH, "float32").embed(frames)
        error = float(np.linalg.norm(features - reference) / np.linalg.norm(reference))
        result["relative_error_vs_float32"] = error
        result["note"] += f", relative error vs float32 {error:.4f}"
    return result


def _sampled_frames(manifest: str, videos: int | None) -> np.ndarray:
    """The sampled frames of the manifest's first `videos` videos, decoded once per bench run (kept beside the
    manifest)."""
    from pipeline.extract.decode import Sampling, decode_video

    cached = Path(manifest).with_suffix(f".frames-{videos or 'all'}.npy")
    if not cached.is_file():
        frames = np.concatenate(
            [decode_video(p, SIZE, Sampling.parse(SAMPLING)).frames for p in _videos(manifest)[:videos]]
        )
        with replacing(cached) as temporary, open(temporary, "wb") as handle:
            np.save(handle, frames)
    return np.load(cached)


def _part_decode(manifest: str, strategy: str, processes: str) -> dict:
    """Decode-only: `pool` as `features` decodes (decoder processes running `decode_job`), or `one` process."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.extract.decode import Sampling, decode_job, decode_video
    from pipeline.extract.decoder_pool import worker_count

    sampling, paths = Sampling.parse(SAMPLING), _videos(manifest)
    started = time.perf_counter()
    if processes == "pool":
        with ProcessPoolExecutor(worker_count(), mp_context=multiprocessing.get_context("forkserver")) as pool:
            jobs = pool.map(decode_job, paths, [SIZE] * len(paths), [sampling] * len(paths), ["center"] * len(paths))
            frames = sum(len(decoded.frames) for decoded, _ in jobs)
        note = f"{worker_count()} decoder processes running decode_job, as in features"
    else:
        frames = sum(len(decode_video(path, SIZE, sampling, strategy=strategy).frames) for path in paths)
        note = f"one process, FFmpeg threads auto, strategy {strategy}"
    return {"frames_per_s": frames / (time.perf_counter() - started), "frames": frames, "note": note}


def _part_features(manifest: str, weights: str, scratch: str, scheduler: str, runtime: str) -> dict:
    from pipeline.extract.config import FeatureConfig
    from pipeline.extract.run import extract_manifest

    config = FeatureConfig("mobilenetv2", image_size=SIZE, sampling=SAMPLING, precision="auto")
    store = Path(tempfile.mkdtemp(dir=scratch)) / "store.h5"
    summary = extract_manifest(
        manifest,
        config,
        weights,
        store_path=store,
        batch_size=BATCH,
        runtime=runtime,
        scheduler=scheduler or None,
        progress=False,
    )
    t = summary.timings
    note = (
        f"{summary.new} videos; decode {t['decode']:.1f}s in workers, main waited {t['wait_decode']:.1f}s, "
        f"cnn {t['cnn']:.1f}s, write {t['write']:.1f}s, total {summary.seconds:.1f}s, runtime {summary.runtime}"
    ) + (f", dask {scheduler}" if scheduler else "")
    return {
        "frames_per_s": summary.frames / summary.seconds,
        "frames": summary.frames,
        "seconds": summary.seconds,
        "timings": t,
        "note": note,
    }


def _part_naive(manifest: str, weights: str, scratch: str) -> dict:
    """The seeds' loop: one video at a time, full-size decode, resize, predict, save."""
    import decord
    import keras
    import tensorflow as tf

    from pipeline.extract.decode import Sampling

    chosen = _weights(weights)
    keras_weights = {"imagenet": "imagenet", "none": None}.get(
        chosen.kind, chosen.path
    )  # the same weights as the pipeline rows
    model = keras.applications.MobileNetV2(
        include_top=False, weights=keras_weights, input_shape=(SIZE, SIZE, 3), pooling="avg"
    )
    out = Path(tempfile.mkdtemp(dir=scratch))
    started, frames = time.perf_counter(), 0
    for number, path in enumerate(_videos(manifest)):
        reader = decord.VideoReader(path)
        indices = Sampling.parse(SAMPLING).indices(len(reader), reader.get_avg_fps())
        batch = tf.image.resize(reader.get_batch(indices.tolist()).asnumpy(), (SIZE, SIZE)).numpy()
        features = model.predict(keras.applications.mobilenet_v2.preprocess_input(batch), verbose=0)
        np.save(out / f"{number}.npy", features)
        frames += len(features)
    return {
        "frames_per_s": frames / (time.perf_counter() - started),
        "frames": frames,
        "note": "per-video decode at full size + resize + predict + np.save",
    }


def _part_cnn_capped(isa: str, manifest: str, weights: str, runtime: str) -> dict:
    """`_part_cnn` with oneDNN capped at `isa` (`ONEDNN_MAX_CPU_ISA`, read when oneDNN first runs): an AVX2 CPU's view
    on a newer one.

    TensorFlow's oneDNN kernels and OpenVINO's convolutions follow the cap (OpenVINO's own small
    kernels do not); ONNX Runtime's do not, so `auto` here is meaningful only where it picks OpenVINO.
    """
    os.environ["ONEDNN_MAX_CPU_ISA"] = isa
    result = _part_cnn(manifest, weights, "float32", runtime)
    result["note"] += f", oneDNN capped at {isa}"
    return result


def _part_cnn_vgg16(manifest: str, precision: str, runtime: str) -> dict:
    return _part_cnn(
        manifest, "none", precision, runtime, backbone="vgg16", videos=8
    )  # 128 frames: VGG16 in float32 is slow


PARTS = {
    "store": part_store,
    "cnn": _part_cnn,
    "cnn_capped": _part_cnn_capped,
    "decode": _part_decode,
    "features": _part_features,
    "naive": _part_naive,
    "cnn_vgg16": _part_cnn_vgg16,
}

if __name__ == "__main__":
    import logging

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    part = PARTS[sys.argv[1]](*sys.argv[2:])
    part["peak_mb"] = _peak_mb()
    print(json.dumps(part, default=float))
