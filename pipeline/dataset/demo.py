"""The embedded demo dataset: synthetic clips whose classes differ only in temporal order.

Three pairs of classes, each pair the time reversal of the other: a shape that grows or shrinks,
fades in or out, or moves left or right, with random shape, colours, position, background and
per-frame noise. Any frame of a `grow` clip could come from a `shrink` clip, so a model that
ignores frame order can at best tell the three pairs apart (about 50% accuracy); a sequence
model has to learn direction. Clips are H.264 (all intra-coded, so the codec does not mark the
first frame as different) in MP4, encoded with PyAV, and the same seed gives the same frames.

Clips are written, and old ones deleted, only in a demo folder the tool made (its marker file, see
`rundir`), in a new or empty folder, or in one an earlier version wrote (its `.render-version` stamp).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.core.atomic import replacing
from pipeline.core.errors import InputError
from pipeline.dataset.manifest import check_writable, write_manifest
from pipeline.runs import folders

CLASSES = ("grow", "shrink", "fade_in", "fade_out", "move_left", "move_right")
SIZE, FRAMES, FPS = 128, 24, 12
SPLIT_SHARES = (("train", 0.7), ("val", 0.15), ("test", 0.15))
RENDER_VERSION = "2"  # bump when render_clip changes: clips of another version are rewritten
STAMP = re.compile(r"\d+ seed=-?\d+")  # what `.render-version` holds: "<RENDER_VERSION> seed=<seed>"
CLIP_NAME = re.compile(rf"(?:{'|'.join(CLASSES)})_\d{{3,}}\.mp4")  # the demo's own clips; nothing else is deleted


def write_demo_dataset(
    folder: str | Path = "manifests/demo",
    manifest: str | Path = "manifests/demo.csv",
    per_class: int = 30,
    seed: int = 0,
) -> Path:
    """Write `per_class` clips per class into `folder` and their manifest; return the manifest path.

    Existing clips are kept (they are identical for the same seed and RENDER_VERSION), so rerunning
    is cheap and does not change file keys, and the feature store stays valid. A folder the tool
    did not make is refused (`folders.FolderError`), so no user's videos are deleted or replaced.
    """
    folder = Path(folder)
    stamp = folder / ".render-version"
    check_writable(manifest)
    folders.claim_folder(folder, "demo", recognised=_stamp(stamp) is not None)
    version = f"{RENDER_VERSION} seed={seed}"
    if _stamp(stamp) != version:
        for old in folder.glob("*.mp4"):
            if CLIP_NAME.fullmatch(old.name):
                old.unlink()
    rows = []
    for class_index, label in enumerate(CLASSES):
        for number in range(per_class):
            path = folder / f"{label}_{number:03d}.mp4"
            if not path.exists():
                rng = np.random.default_rng([seed, class_index, number])
                write_clip(path, render_clip(label, rng))
            rows.append(
                {
                    "path": str(path),
                    "label": label,
                    "split": _split_of(number, per_class),
                    "group": f"{label}_{number:03d}",
                }
            )
    stamp.write_text(version)
    return write_manifest(pd.DataFrame(rows), manifest)


def render_clip(label: str, rng: np.random.Generator) -> np.ndarray:
    """Frames (FRAMES, SIZE, SIZE, 3) uint8 of one clip of class `label`."""
    if label not in CLASSES:
        raise InputError(f"unknown demo class {label!r}; classes are {CLASSES}")
    t = np.linspace(0.0, 1.0, FRAMES)
    if label in ("shrink", "fade_out", "move_left"):
        t = t[::-1]  # each class is its partner played backwards
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    # a pale shape on a dark background: with clip colours free to be anything, the features of a
    # frozen random CNN mostly encode the colours, and "more shape" moves them one way in one clip
    # and the opposite way in the next, which a sequence model cannot learn from a few clips
    background = 0.3 * _background(rng, yy, xx)
    colour = rng.uniform(190, 255, 3).astype(np.float32)
    square = rng.random() < 0.5
    cx, cy = rng.uniform(0.35, 0.65, 2) * SIZE
    radius = rng.uniform(0.26, 0.34) * SIZE
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for i, step in enumerate(t):
        r, alpha, x = radius, 1.0, cx
        if label in ("grow", "shrink"):
            r = radius * (0.05 + 0.95 * step)
        elif label in ("fade_in", "fade_out"):
            alpha = step
        else:
            x = SIZE * (0.1 + 0.8 * step)
        mask = _shape_mask(xx, yy, x, cy, r, square)[..., None] * alpha
        frame = background * (1 - mask) + colour * mask + rng.normal(0, 6, (SIZE, SIZE, 3))
        frames[i] = np.clip(frame, 0, 255).astype(np.uint8)
    return frames


def write_clip(
    path: str | Path, frames: np.ndarray, fps: int = FPS, codec: str = "libx264", options: dict | None = None
) -> None:
    """Encode frames (n, h, w, 3) uint8 as a video with PyAV; written to a temporary name first."""
    import av

    path = Path(path)
    with replacing(
        path, path.with_name(f".{path.name}.tmp{path.suffix}")
    ) as temporary:  # the suffix tells PyAV the container
        with av.open(str(temporary), "w") as container:
            stream = container.add_stream(codec, rate=fps)
            stream.width, stream.height = frames.shape[2], frames.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = options if options is not None else {"g": "1", "crf": "14"}
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())


def _background(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A random two-colour linear gradient at a random angle."""
    first, second = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / SIZE
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    return first * (1 - ramp[..., None]) + second * ramp[..., None]


def _shape_mask(xx, yy, cx, cy, r, square: bool) -> np.ndarray:
    if square:
        return ((np.abs(xx - cx) <= r) & (np.abs(yy - cy) <= r)).astype(np.float32)
    return ((xx - cx) ** 2 + (yy - cy) ** 2 <= r * r).astype(np.float32)


def _stamp(path: Path) -> str | None:
    """The well-formed render stamp in `path`, else None (missing, unreadable or not one of ours)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return None
    return text if STAMP.fullmatch(text) else None


def _split_of(number: int, per_class: int) -> str:
    """Deterministic per-class split: the first 70% train, then 15% val, the rest test."""
    position = (number + 0.5) / per_class
    edge = 0.0
    for name, share in SPLIT_SHARES:
        edge += share
        if position < edge:
            return name
    return SPLIT_SHARES[-1][0]
