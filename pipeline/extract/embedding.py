"""Embedding videos in one process: decoder processes feed fixed-size CNN batches, finished videos go to shards.

Videos are decoded in decoder processes (see `decoder_pool`) a few videos ahead of the CNN; their
frames fill fixed-size batches across video boundaries (`FrameBatcher`), so the CNN never runs on
a tiny batch and a video's features do not depend on its neighbours. Each finished or failed video
goes into the current shard (`ShardWriter`), written to the run's folder every `shard_size` videos,
so a killed run loses at most one shard.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import store
from pipeline.core.errors import BackboneError
from pipeline.extract.backbones import Backbone, check_informative
from pipeline.extract.decode import DecodedVideo, Sampling, decode_job
from pipeline.extract.decoder_pool import DecodeFailure, decode_all

if TYPE_CHECKING:
    from pipeline.extract.config import ExtractSummary, FeatureConfig

log = logging.getLogger(__name__)

# Decoded frames that may wait for the CNN (29 MB at 224 px). A deep queue of short videos lets
# every decoder work on while the CNN waits for a slow one; long videos still get 2 per decoder,
# which bounds memory.
PREFETCH_FRAMES = 192
SPACE_MARGIN = 16 * 2**20  # what a disk must hold beyond a write's data: HDF5 metadata, the index a merge writes


def embed_videos(
    rows: list,
    run_dir: Path,
    backbone: Backbone,
    config: FeatureConfig,
    summary: ExtractSummary,
    *,
    workers: int = 1,
    timeout: float = 120.0,
    shard_size: int = 64,
    on_video=None,
    decode_hook=None,
) -> None:
    """Decode and embed `rows`, writing finished videos to shard files in `run_dir`; count into `summary`.

    This is one unit of work, run in-process or as a dask task; merging the shards is the caller's.
    """
    sampling = Sampling.parse(config.sampling, config.max_frames)
    writer = ShardWriter(run_dir, backbone.dim, config.dtype, shard_size, summary, on_video)
    batcher = FrameBatcher(backbone, summary.timings)
    jobs = (
        (row, functools.partial(decode_job, row.path, config.image_size, sampling, config.crop, decode_hook))
        for row in rows
    )
    ahead = max(workers * 2 + 1, PREFETCH_FRAMES // sampling.most_frames)
    try:
        with contextlib.closing(
            decode_all(jobs, workers=workers, timeout=timeout, ahead=ahead, timings=summary.timings)
        ) as outcomes:
            for row, outcome in outcomes:
                if isinstance(outcome, DecodeFailure):
                    writer.fail(row, outcome)
                    continue
                decoded, seconds = outcome
                summary.timings["decode"] += seconds
                for video in batcher.add(row, decoded):
                    writer.finish(video)
        for video in batcher.drain():
            writer.finish(video)
    except BackboneError:
        raise  # useless features: nothing of this run is worth keeping
    except BaseException:
        writer.flush()  # Ctrl-C or another error: keep every finished video
        raise
    writer.flush()


@dataclass
class PendingVideo:
    """A decoded video whose frames go through the CNN batch by batch."""

    row: store.VideoRow
    decoded: DecodedVideo
    features: np.ndarray  # (frames, dim) float32, filled as batches finish
    embedded: int = 0  # frames embedded so far

    @property
    def remaining(self) -> int:
        return len(self.decoded.frames) - self.embedded


class FrameBatcher:
    """Fills fixed-size CNN batches with frames from consecutive videos; returns finished videos."""

    def __init__(self, backbone: Backbone, timings: dict):
        self.backbone, self.timings = backbone, timings
        self.queue: deque[PendingVideo] = deque()
        self.ready = 0  # frames decoded and not embedded yet
        self.checked = False

    def add(self, row: store.VideoRow, decoded: DecodedVideo) -> list[PendingVideo]:
        self.queue.append(PendingVideo(row, decoded, np.empty((len(decoded.frames), self.backbone.dim), np.float32)))
        self.ready += len(decoded.frames)
        finished = []
        while self.ready >= self.backbone.batch_size:
            finished += self._run(self.backbone.batch_size)
        return finished

    def drain(self) -> list[PendingVideo]:
        finished = []
        while self.ready:
            finished += self._run(min(self.ready, self.backbone.batch_size))
        return finished

    def _run(self, count: int) -> list[PendingVideo]:
        """Embed the next `count` frames (the last batch is padded by the backbone); pop the videos now complete."""
        parts, taken = [], 0
        for video in self.queue:
            if taken == count:
                break
            take = min(count - taken, video.remaining)
            parts.append((video, video.embedded, take))
            taken += take
        batch = np.concatenate([video.decoded.frames[start : start + take] for video, start, take in parts])
        t = time.perf_counter()
        features = self.backbone.embed(batch)
        self.timings["cnn"] += time.perf_counter() - t
        if not self.checked:
            check_informative(batch, features, self.backbone)
            self.checked = True
        offset = 0
        for video, start, take in parts:
            video.features[start : start + take] = features[offset : offset + take]
            video.embedded += take
            offset += take
        self.ready -= count
        finished = []
        while self.queue and self.queue[0].remaining == 0:
            finished.append(self.queue.popleft())
        return finished


class ShardWriter:
    """The shard being filled: finished and failed videos, written to `run_dir` every `shard_size` videos.

    Counts each video into `summary` and calls `on_video()` (the progress bar) once per video.
    """

    def __init__(self, run_dir: Path, dim: int, dtype: str, shard_size: int, summary: ExtractSummary, on_video=None):
        self.run_dir, self.dim, self.dtype, self.shard_size = run_dir, dim, dtype, shard_size
        self.summary, self.on_video = summary, on_video
        self.shard = store.Shard()

    def finish(self, video: PendingVideo) -> None:
        decoded = video.decoded
        self.shard.add_video(
            video.row,
            video.features.astype(self.dtype),
            decoded.frame_index,
            decoded.timestamps,
            decoded.total_frames,
            decoded.fps,
            decoded.width,
            decoded.height,
        )
        self.summary.new += 1
        self.summary.frames += len(video.features)
        self._advance()

    def fail(self, row: store.VideoRow, failure: DecodeFailure) -> None:
        log.warning("%s: [%s] %s", row.path, failure.stage, failure.message)
        self.shard.add_failure(row, failure.stage, failure.error, failure.message)
        self.summary.failed += 1
        self._advance()

    def flush(self) -> None:
        """Write the shard, if it holds any video, and start a new one."""
        if len(self.shard):
            t = time.perf_counter()
            require_space(self.run_dir, 2 * sum(f.nbytes for f in self.shard.features), "the next shard")
            store.write_shard(self.run_dir, self.shard, self.dim, self.dtype)
            self.summary.timings["write"] += time.perf_counter() - t
            self.shard = store.Shard()

    def _advance(self) -> None:
        if self.on_video:
            self.on_video()
        if len(self.shard) >= self.shard_size:
            self.flush()


def require_space(folder: Path, needed: int, what: str) -> None:
    """Raise OSError(ENOSPC) naming `folder` when its disk has less than `needed` + SPACE_MARGIN bytes free.

    HDF5 crashes the process (a segfault closing the file) after a write that failed for space, so the
    writers look first: the command line then exits 2 naming the folder, and the shards written are kept.
    """
    import errno
    import shutil

    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {free / 2**20:.1f} MiB free where {what} needs about "
            f"{(needed + SPACE_MARGIN) / 2**20:.0f} MiB",
            str(folder),
        )
