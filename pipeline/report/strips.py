"""Thumbnail strips of test videos for a run's page: the clips a model got wrong (and right), seen.

A strip is a few of the frames the model saw (the `frame_times` train records in predictions.csv;
evenly spread over the clip for a run without them), small, side by side, one JPEG per video in
the run's `strips/` folder, shared by every model that shows the video.

Why here, read with PyAV at report time: reports may not import stage one (the layer rule of
tests/test_layout.py), and `train` never decodes video, so neither can make the strip. Reading a
handful of frames with PyAV (a dependency already) is a few lines and needs nothing new in the run.
It also keeps the page honest: a video that was moved or deleted since training shows its path
and why it cannot be read, never a stale picture. A strip is made again only when the video is
newer than it, so rewriting a report costs little.

A video path comes from the manifest of whoever trained the run, so it is opened only as a plain
file (a FIFO would block the reader), decoding stops after `MAX_DECODED` frames per strip frame,
and anything the decoder raises means "not readable", never a failed report.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from pathlib import Path
from urllib.parse import quote

import numpy as np

from pipeline.core import atomic
from pipeline.runs.layout import RUN_TREES

log = logging.getLogger(__name__)

FOLDER = "strips"
NAME = RUN_TREES[FOLDER]  # strips/<this>: the files `strip` writes, and only those are ever removed
FRAMES = 8  # frames per strip at most
HEIGHT = 64  # pixels
QUALITY = 70  # JPEG
MAX_DECODED = 300  # frames decoded while looking for one strip frame
SEEK_GAP = 2.0  # seconds: a strip frame further ahead than this is sought, nearer ones decoded up to


def strip(run_dir: Path, path: str, frame_times: str) -> tuple[str | None, str]:
    """The strip of the video at `path` (`frame_times`: seconds, space-separated; "" for evenly
    spread frames), written under `run_dir`/strips if not there already: (its path relative to the
    run, or None, and why there is none)."""
    name = hashlib.sha256(f"{path}\0{frame_times}".encode()).hexdigest()[:16] + ".jpg"
    target = Path(run_dir) / FOLDER / name
    try:
        video = os.stat(path)
    except (OSError, ValueError) as error:
        return None, f"not readable: {getattr(error, 'strerror', None) or error}"
    if not stat.S_ISREG(video.st_mode):
        return None, "not readable: not a plain file"
    try:
        if target.stat().st_mtime >= video.st_mtime and not target.is_symlink():
            return f"{FOLDER}/{name}", ""
    except OSError:
        pass
    try:
        images = thumbnails(path, _times(frame_times))
    except Exception as error:  # whatever a broken or hostile file makes the decoder raise
        log.debug("no strip of %s: %s", path, error)
        return None, f"not readable: {type(error).__name__}"
    if not images:
        return None, "not readable: no frames decoded"
    try:
        _write_jpeg(target, images)
    except OSError as error:  # e.g. a file of someone else's named strips in the run
        log.warning("no strip of %s written: %s", path, error)
        return None, f"no strip written: {error.strerror or error}"
    return f"{FOLDER}/{name}", ""


def thumbnails(path: str, times: list[float] | None = None, count: int = FRAMES, height: int = HEIGHT) -> list:
    """Up to `count` RGB frames (arrays `height` pixels high) of the video at `path`, at or just after
    `times` (seconds; spread over the clip when None), read with PyAV."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if not times:
            seconds = float(stream.duration * stream.time_base) if stream.duration else (container.duration or 0) / 1e6
            frame = 1 / float(stream.average_rate) if stream.average_rate else 0.0
            times = list(np.linspace(0, max(0.0, seconds - frame), count))
        spread = np.unique(np.round(np.linspace(0, len(times) - 1, min(count, len(times)))).astype(int))
        wanted = [times[i] for i in spread]
        images, frames, last = [], None, None
        for when in wanted:
            if last is not None and last.time is not None and last.time >= when - 1e-3:
                images.append(images[-1])  # two strip times within one frame
                continue
            if frames is None or last is None or last.time is None or when - last.time > SEEK_GAP:
                container.seek(max(0, int(when / stream.time_base)), stream=stream, backward=True)
                frames = container.decode(stream)
            ended = False
            for decoded, frame in enumerate(frames):
                last = frame
                if frame.time is None or frame.time >= when - 1e-3 or decoded >= MAX_DECODED:
                    break
            else:
                ended = True
            if last is None:
                break
            width = max(1, round(last.width * height / max(1, last.height)))
            images.append(last.to_ndarray(width=width, height=height, format="rgb24"))
            if ended:
                break  # past the last frame: it stands for the rest
        return images


def file_link(path: str) -> str:
    """A link to a video: a file:// URL for an absolute path, else the path URL-quoted (a `javascript:` or other
    scheme in a path someone wrote becomes a harmless relative name)."""
    return Path(path).as_uri() if os.path.isabs(path) else quote(path)


def remove_unused(run_dir: Path, used: set[str]) -> None:
    """Delete the strips of `run_dir` that the page no longer shows (only files named as `strip` names them)."""
    folder = Path(run_dir) / FOLDER
    if folder.is_dir() and not folder.is_symlink():
        for entry in folder.iterdir():
            if NAME.fullmatch(entry.name) and f"{FOLDER}/{entry.name}" not in used:
                entry.unlink()


def _times(text: str) -> list[float] | None:
    try:
        return [float(value) for value in str(text).split()] or None
    except ValueError:
        return None


def _write_jpeg(target: Path, images: list) -> None:
    """The images side by side (2-pixel white gaps) as one JPEG at `target`, replacing it in one step (a link
    planted there, or at the folder, is replaced, never written through)."""
    from PIL import Image

    folder = target.parent
    if folder.is_symlink():
        folder.unlink()
    folder.mkdir(exist_ok=True)  # FileExistsError over a file of that name: never deleted
    gap = np.full((images[0].shape[0], 2, 3), 255, np.uint8)
    row = np.concatenate([part for image in images for part in (image, gap)][:-1], axis=1)
    with atomic.replacing(target) as temporary:
        Image.fromarray(row).save(temporary, format="JPEG", quality=QUALITY, optimize=True)
