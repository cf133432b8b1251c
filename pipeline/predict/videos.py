"""Classify new videos with a loaded run: decode and embed each as the run's features were made, then the run's model;
whole videos or sliding windows.

Class names come from the run (anyone's), so in the per-window table they are never column names of their own:
a class's probability is `p_<class>` and its smoothed probability `smoothed:<class>`, beside fixed columns
(`video`, `start_s`, `end_s`, `label`, ...) that no class name can take the place of.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.errors import InputError
from pipeline.dataset.importers import VIDEO_EXTENSIONS
from pipeline.extract.backbones import Backbone, load_backbone
from pipeline.extract.decode import Sampling, decode_job, decode_video, probe_video
from pipeline.extract.decoder_pool import DecodeFailure, decode_all, with_hook, worker_count
from pipeline.predict.run import Run

log = logging.getLogger(__name__)


@dataclass
class Predictions:
    """What `predict_videos` found: one row per video, per-window tracks, and failures."""

    videos: pd.DataFrame
    windows: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def failed(self) -> int:
        return int((self.videos["status"] != "ok").sum()) if len(self.videos) else 0


def predict_videos(
    run: Run,
    inputs: list[str | Path],
    *,
    window: float | None = None,
    stride: float | None = None,
    top_k: int = 3,
    smooth: int = 3,
    progress: bool = True,
    workers: int | None = None,
    timeout: float = 120.0,
    decode_hook=None,
    runtime: str = "tensorflow",
    on_video=None,
) -> Predictions:
    """Classify every video (folders are searched for video files); a bad video fails alone.

    Videos are decoded in the decoder pool of `features`: `workers` processes (default one per
    core), each video (each window, with `window`) limited to `timeout` seconds, so a video that
    hangs or crashes its decoder fails with that reason and the others are classified.
    `decode_hook(path)`, if given, runs in the decoder first (fault injection for tests). `runtime`:
    see `runtimes`. `on_video(row)`, if given, gets each video's row of `videos` as soon as it is
    classified or failed, in input order (the command line prints it and keeps it on disk).
    """
    from tqdm import tqdm

    if top_k < 1:
        raise InputError(f"top_k {top_k} must be at least 1 (the labels reported per video)")
    fc = run.features
    backbone = load_backbone(
        fc.backbone, run.weights, fc.image_size, precision=fc.precision, runtime=runtime, pooling=fc.pooling
    )
    sampling = Sampling.parse(fc.sampling, fc.max_frames)
    paths = expand_inputs(inputs)
    pool = {"workers": workers or worker_count(), "timeout": timeout, "ahead": 2 * (workers or worker_count()) + 1}
    if window:
        outcomes = _window_tracks(run, backbone, sampling, paths, window, stride or window, smooth, pool, decode_hook)
    else:
        outcomes = decode_all(
            (
                (path, functools.partial(decode_job, str(path), fc.image_size, sampling, fc.crop, decode_hook))
                for path in paths
            ),
            **pool,
        )
    rows, tracks = [], []
    with (
        contextlib.closing(outcomes),
        tqdm(total=len(paths), unit="video", disable=not progress, dynamic_ncols=True) as bar,
    ):
        for path, outcome in outcomes:
            bar.update()
            if isinstance(outcome, DecodeFailure):
                log.warning("%s: [%s] %s", path, outcome.stage, outcome.message)
                rows.append({"video": str(path), "status": f"failed:{outcome.stage}", "error": outcome.message})
            else:
                if window:
                    tracks.append(outcome)
                    probabilities = outcome[probability_columns(run.labels)].to_numpy().mean(axis=0)
                else:
                    probabilities = run.classify(backbone.embed(outcome[0].frames))
                rows.append(
                    {"video": str(path), "status": "ok", **_top_k(probabilities, run.labels, top_k), "error": ""}
                )
            if on_video:
                on_video(rows[-1])
    return Predictions(pd.DataFrame(rows), pd.concat(tracks, ignore_index=True) if tracks else pd.DataFrame())


def probability_columns(labels: list[str]) -> list[str]:
    """The per-window table's column of each class's probability: `p_<class>`, so that a class called `video` or
    `label` cannot overwrite a fixed column."""
    return [f"p_{label}" for label in labels]


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given (missing ones too, so they fail visibly); folders searched recursively for videos."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            found.append(item)
    return found


def _window_tracks(
    run: Run,
    backbone: Backbone,
    sampling: Sampling,
    paths: list[Path],
    window: float,
    stride: float,
    smooth: int,
    pool: dict,
    hook,
) -> Iterator[tuple[Path, pd.DataFrame | DecodeFailure]]:
    """Per video, in order: its windows' probabilities with their centred moving average, or why it failed.

    Probing and every window run in the decoder pool; a window is classified as soon as it is
    decoded, so a long video never waits in memory as a whole.
    """
    fc = run.features

    def job(path: Path, call):
        return functools.partial(with_hook, hook, str(path), call) if hook else call

    probes = dict(decode_all(((path, job(path, functools.partial(probe_video, str(path)))) for path in paths), **pool))
    ranges = {
        path: _window_ranges(*probe[:2], window, stride)
        for path, probe in probes.items()
        if not isinstance(probe, DecodeFailure)
    }
    jobs = (
        (
            path,
            job(
                path,
                functools.partial(
                    decode_video,
                    str(path),
                    fc.image_size,
                    sampling,
                    fc.crop,
                    threads=1,
                    frame_range=(start, stop),
                ),
            ),
        )
        for path in paths
        if path in ranges
        for start, stop in ranges[path]
    )
    with contextlib.closing(decode_all(jobs, **pool)) as outcomes:
        for path in paths:
            if path not in ranges:
                yield path, probes[path]
                continue
            fps = probes[path][1] or 30.0
            rows, failure = [], None
            for start, stop in ranges[path]:
                _, decoded = next(outcomes)
                if isinstance(decoded, DecodeFailure):
                    failure = failure or decoded
                elif failure is None:
                    probabilities = run.classify(backbone.embed(decoded.frames))
                    rows.append(
                        {
                            "video": str(path),
                            "start_s": start / fps,
                            "end_s": stop / fps,
                            **dict(zip(probability_columns(run.labels), probabilities)),
                        }
                    )
            yield path, failure or _smoothed(pd.DataFrame(rows), run.labels, smooth)


def _window_ranges(total: int, fps: float, window: float, stride: float) -> list[tuple[int, int]]:
    """Frame ranges of windows of `window` seconds every `stride` seconds (one window if the video is shorter)."""
    fps = fps or 30.0
    length, step = max(1, round(window * fps)), max(1, round(stride * fps))
    return [(start, min(total, start + length)) for start in range(0, max(1, total - length + 1), step)]


def _smoothed(track: pd.DataFrame, labels: list[str], smooth: int) -> pd.DataFrame:
    """Add each window's label, and the centred moving average over `smooth` windows with its label."""
    raw = track[probability_columns(labels)].set_axis(labels, axis=1)
    track["label"] = raw.idxmax(axis=1)
    track["probability"] = raw.max(axis=1)
    smoothed = raw.rolling(max(1, smooth), center=True, min_periods=1).mean()
    track["smoothed_label"] = smoothed.idxmax(axis=1)
    track["smoothed_probability"] = smoothed.max(axis=1)
    for label in labels:
        track[f"smoothed:{label}"] = smoothed[label]
    return track


def _top_k(probabilities: np.ndarray, labels: list[str], k: int) -> dict:
    order = np.argsort(probabilities)[::-1][:k]
    result = {}
    for rank, index in enumerate(order, start=1):
        result[f"label_{rank}"] = labels[index]
        result[f"probability_{rank}"] = float(probabilities[index])
    return result
