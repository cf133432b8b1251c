"""Decoding videos with decord: frame sampling, decoding at the target size, cropping.

Decord scales each frame inside FFmpeg while decoding (`VideoReader(width=, height=)`), so a 1080p
video never exists in memory at full size: we ask for the size whose short side is the target, then
cut the centre square (crop policy `center`), or ask for the target square directly (`squash`).
Rotation metadata is applied by decord, so a portrait phone video arrives upright.

Sampling policies (frame indices into the decoded stream):
  uniform:K  K frames, the centre of K equal segments (TSN style). A video with fewer than K frames
             repeats frames (nearest neighbour), so every video yields exactly K rows.
  fps:F      F frames per second of video time.
  stride:N   every Nth frame, starting at frame 0.
  all        every frame.
Every policy has a `max_frames` cap: more sampled frames than that are thinned evenly over the
whole video, so the cap keeps the video's full time span rather than its first seconds.

A video whose sampled frames cannot all be decoded is a failure (no partial videos): a corrupt
stream such as decord's own corrupted.mp4 (frames 0-27 decode, 28-49 do not) would otherwise give
a sequence that silently covers only the start of the clip.
"""

from __future__ import annotations

import os
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError, PipelineError, error_line

CROPS = ("center", "squash")
STRATEGIES = ("auto", "seek", "sequential")
DECODE_CHUNK = 32  # frames per decord call: bounds memory on long or high-resolution videos


@dataclass(frozen=True)
class Sampling:
    """Which frames of a video to take; see the module docstring for the policies."""

    kind: str
    value: float = 0
    max_frames: int = 512

    @classmethod
    def parse(cls, spec: str, max_frames: int = 512) -> "Sampling":
        """Parse `uniform:16`, `fps:2.5`, `stride:4` or `all`."""
        number = r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+"  # what float() reads: not `1.2.3` nor `.`
        match = isinstance(spec, str) and re.fullmatch(
            rf"(uniform|fps|stride|all)(?::({number}))?", spec.strip().lower()
        )
        if not match or (match.group(1) == "all") != (match.group(2) is None):
            raise InputError(f"sampling {spec!r} is not one of uniform:K, fps:F, stride:N, all")
        kind, value = match.group(1), float(match.group(2) or 0)
        if value == float("inf"):
            raise InputError(f"sampling {spec!r}: the number is too large")
        if kind in ("uniform", "stride") and (value < 1 or value != int(value)):
            raise InputError(f"sampling {spec!r}: {kind} takes a whole number >= 1")
        if kind == "fps" and value <= 0:
            raise InputError(f"sampling {spec!r}: fps takes a number > 0")
        if max_frames < 1:
            raise InputError(f"max_frames must be >= 1, got {max_frames}")
        return cls(kind, int(value) if kind != "fps" else value, max_frames)

    def __str__(self) -> str:
        return self.kind if self.kind == "all" else f"{self.kind}:{self.value:g}"

    @property
    def most_frames(self) -> int:
        """The most frames one video can yield under this policy."""
        return min(int(self.value), self.max_frames) if self.kind == "uniform" else self.max_frames

    def indices(self, total_frames: int, fps: float) -> np.ndarray:
        """Frame indices to decode, in order, for a video of `total_frames` frames at `fps`."""
        if self.kind == "uniform":
            k = int(self.value)
            picked = np.floor((np.arange(k) + 0.5) * total_frames / k).astype(np.int64)
        elif self.kind == "fps":
            step = (fps or 30.0) / self.value
            picked = np.unique(np.round(np.arange(0, total_frames, step)).astype(np.int64))
        elif self.kind == "stride":
            picked = np.arange(0, total_frames, int(self.value), dtype=np.int64)
        else:
            picked = np.arange(total_frames, dtype=np.int64)
        picked = np.clip(picked, 0, total_frames - 1)
        if len(picked) > self.max_frames:
            picked = picked[
                np.floor((np.arange(self.max_frames) + 0.5) * len(picked) / self.max_frames).astype(np.int64)
            ]
        return picked


class DecodeError(PipelineError):
    """A video that cannot be used. `stage` is the failure-table stage, `reason` a readable cause."""

    def __init__(self, stage: str, reason: str, detail: str = ""):
        super().__init__(stage, reason, detail)  # all three in args, so it survives pickling
        self.stage, self.reason, self.detail = stage, reason, detail

    def __str__(self) -> str:
        return self.reason


@dataclass
class DecodedVideo:
    """Sampled frames of one video at the target size, with where they came from."""

    frames: np.ndarray  # (n, size, size, 3) uint8 RGB
    frame_index: np.ndarray  # (n,) source frame numbers
    timestamps: np.ndarray  # (n,) seconds
    total_frames: int
    fps: float
    width: int  # as displayed, after rotation
    height: int


def decode_video(
    path: str | Path,
    size: int,
    sampling: Sampling,
    crop: str = "center",
    threads: int = 0,
    strategy: str = "auto",
    frame_range: tuple[int, int] | None = None,
) -> DecodedVideo:
    """Decode the sampled frames of one video at `size` x `size`; raise DecodeError if unusable.

    `strategy` is how frames are reached: `seek` (decord's batch read: on from the previous sampled
    frame within a GOP, else from the sampled frame's keyframe), `sequential` (read on, skipping),
    or `auto`: seek, unless the video has no keyframe index to seek by. Seeking never decodes more
    frames than reading on, and was the faster of the two on real videos (README: *Measured design
    choices*). Both give the same pixels.
    `frame_range` (start, stop) applies the sampling to that part of the video only (a window of
    a long video).
    """
    import decord  # imported here so that stage two and the CLI help never load FFmpeg

    decord.logging.set_level(decord.logging.QUIET)  # FFmpeg's own log lines; failures are reported by us
    if crop not in CROPS:
        raise InputError(f"crop {crop!r} is not one of {', '.join(CROPS)}")
    path = Path(path)
    total, fps, width, height = probe_video(path)

    out_w, out_h = (size, size) if crop == "squash" else _short_side_to(width, height, size)
    start, stop = frame_range if frame_range else (0, total)
    stop = min(stop, total)
    if not 0 <= start < stop:
        raise DecodeError("decode", f"frame range {start}..{stop} lies outside the video's {total} frames")
    wanted = start + sampling.indices(stop - start, fps)
    unique, inverse = np.unique(wanted, return_inverse=True)
    try:
        reader, frames = _read_frames(decord, path, out_w, out_h, unique, size, total, threads, strategy)
    except _OutputSizeBug:
        # decord mis-sizes its output buffer for a few scaled sizes of rotated videos (e.g. 48 px
        # wide): a slightly larger size avoids it, and the centre crop takes the target back out
        try:
            reader, frames = _read_frames(decord, path, out_w + 2, out_h + 2, unique, size, total, threads, strategy)
        except _OutputSizeBug:
            raise DecodeError(
                "decode",
                f"decord cannot scale this video to {out_w}x{out_h} (output buffer size bug); try another --image-size",
            ) from None
    try:
        timestamps = reader.get_frame_timestamp(unique.tolist())[:, 0].astype(np.float64)
    except Exception:  # some containers carry no per-frame timestamps; fall back to the frame rate
        timestamps = unique / (fps or 30.0)
    return DecodedVideo(frames[inverse], wanted, timestamps[inverse], total, fps, width, height)


def decode_job(path: str, size: int, sampling: Sampling, crop: str, hook=None) -> tuple[DecodedVideo, float]:
    """One video in a decoder process, with the seconds it took; `hook(path)` runs first (fault injection).

    One decoding thread: the decoder processes themselves are the parallelism.
    """
    if hook:
        hook(path)
    started = time.perf_counter()
    decoded = decode_video(path, size, sampling, crop, threads=1)
    return decoded, time.perf_counter() - started


def decoder_process_init() -> None:
    """Decoder processes run at the lowest CPU priority (nice 19) and never dump core.

    The CNN then gets the cores first and the decoders take what it leaves, so they never slow
    it down, and while it waits for frames they have the whole machine (measured faster end to end
    than decoders at normal priority: README). A corrupt file that crashes FFmpeg
    is reported as a failure; a core file of the decoder would only fill the user's folder (tens
    of MB per crash) and, while it is written, make the crash look like a timeout.
    """
    os.setpriority(os.PRIO_PROCESS, 0, 19)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def probe_video(path: str | Path) -> tuple[int, float, int, int]:
    """Frame count, frame rate, and width and height as displayed (after rotation); DecodeError if unusable."""
    import decord

    decord.logging.set_level(decord.logging.QUIET)
    path = Path(path)
    if not path.is_file():
        raise DecodeError("missing", f"file not found: {path}")
    if path.stat().st_size == 0:
        raise DecodeError("empty", "file is empty (0 bytes)")
    try:
        probe = decord.VideoReader(str(path), num_threads=1)
        total, fps = len(probe), float(probe.get_avg_fps())
        height, width = probe[0].shape[:2]  # decoded, because only decord knows the rotated size
    except Exception as error:  # decord raises RuntimeError, DECORDError or AssertionError here
        raise DecodeError("open", _open_reason(path, error), error_line(error, limit=500)) from None
    if total <= 0:
        raise DecodeError("empty", "the video has no frames")
    return total, fps, int(width), int(height)


class _OutputSizeBug(Exception):
    """decord's scaled frame did not fit the buffer it made ('from_size == to_size', or a wrong shape)."""


def _read_frames(
    decord, path: Path, out_w: int, out_h: int, unique: np.ndarray, size: int, total: int, threads: int, strategy: str
):
    """Decode the frames `unique` scaled to out_w x out_h, in chunks; return the reader and frames."""
    reader = decord.VideoReader(str(path), width=out_w, height=out_h, num_threads=threads)
    sequential = strategy == "sequential" or (strategy == "auto" and not len(reader.get_key_indices()))
    frames = np.empty((len(unique), size, size, 3), np.uint8)
    position = 0
    for start in range(0, len(unique), DECODE_CHUNK):
        chunk = unique[start : start + DECODE_CHUNK]
        try:
            if sequential:
                batch, position = _read_sequentially(reader, chunk, position)
            else:
                batch = reader.get_batch(chunk.tolist()).asnumpy()
        except Exception as error:
            if "from_size == to_size" in str(error):
                raise _OutputSizeBug() from None
            reason = _decode_reason(
                decord.VideoReader(str(path), width=out_w, height=out_h, num_threads=1), chunk, total
            )
            raise DecodeError("decode", reason, error_line(error, limit=500)) from None
        if batch.shape[1:] != (out_h, out_w, 3):  # the same decord bug, seen through next()
            raise _OutputSizeBug()
        frames[start : start + len(chunk)] = _center_crop(batch, size)
    return reader, frames


def _read_sequentially(reader, chunk: np.ndarray, position: int) -> tuple[np.ndarray, int]:
    """Read on through the stream, skipping to each wanted frame; return frames and the new position."""
    frames = []
    for index in chunk.tolist():
        if index > position:
            reader.skip_frames(index - position)
        frames.append(reader.next().asnumpy())
        position = index + 1
    return np.stack(frames), position


def _short_side_to(width: int, height: int, size: int) -> tuple[int, int]:
    """Output width and height with the short side equal to `size`, keeping the aspect ratio."""
    scale = size / min(width, height)
    return max(size, 2 * round(width * scale / 2)), max(size, 2 * round(height * scale / 2))


def _center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    top = (frames.shape[1] - size) // 2
    left = (frames.shape[2] - size) // 2
    return frames[:, top : top + size, left : left + size]


def _open_reason(path: Path, error: Exception) -> str:
    text = str(error)
    with open(path, "rb") as handle:
        head = handle.read(512).lstrip()
    if head[:1] == b"<" or head[:5].lower() in (b"<!doc", b"<html"):
        return "not a video: the file is an HTML/XML text document"
    if "broken metadata" in text:
        return (
            "container metadata is broken or missing (no duration or frame count, e.g. a recording that was "
            "never finalised or a streaming-style file); remux it, e.g. `ffmpeg -i IN -c copy OUT.mkv`"
        )
    if "Invalid frame count" in text:
        return "the container reports no video frames"
    return "not a readable video (unknown format, no video stream, or a truncated file)"


def _decode_reason(reader, chunk: np.ndarray, total: int) -> str:
    """Find the first sampled frame that fails, for a message a person can act on.

    `reader` is a fresh single-threaded one: the reader that failed, frame-threaded and left
    mid-error, named an earlier frame on some runs than on others.
    """
    for index in chunk.tolist():
        try:
            reader[index]
        except Exception:
            return (
                f"corrupt stream: frame {index} of {total} cannot be decoded (the file is damaged or "
                "truncated after that point)"
            )
    return f"decoding frames {int(chunk[0])}..{int(chunk[-1])} of {total} failed (decoder error on a batch read)"
