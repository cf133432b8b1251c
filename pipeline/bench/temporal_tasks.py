"""The temporal benchmark's tasks: synthetic clips whose classes differ only in the direction of time, and
windows of real footage played forward and reversed (the runner is `temporal_bench`).

Every clip of one class is a clip of the other played backwards (the noise included), so an
order-blind model is at chance by construction and every point above chance comes from frame order.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline.dataset.demo import write_clip
from pipeline.dataset.importers import VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

SIZE, FRAMES, FPS = 96, 16, 12  # synthetic clips: 96 x 96 px, 16 frames
MOTIONS = ("translate", "rotate", "scale", "brightness")
SHAPES = ("square", "triangle", "ellipse")
SPEEDS = (1.0, 2.0, 3.0)  # multiples of each motion's slowest rate
SIZES = (0.12, 0.18, 0.26)  # shape radius as a share of the frame
WINDOW_FPS = 10.0  # real-footage windows at speed 1 take about this many frames per second of the source
WINDOW_SPEEDS = (1, 2)  # and at speed 2 every second one of those: twice the motion per window
SYNTHETIC_TASKS = ("motion", "clutter")


def render_motion(rng: np.random.Generator, forward: bool) -> tuple[np.ndarray, dict]:
    """Frames (FRAMES, SIZE, SIZE, 3) uint8 of one `motion` clip, and what was drawn.

    The clip is drawn forward (noise included) and played in reverse for `backward`, so the two
    classes draw from the same frames.
    """
    kind, shape = rng.choice(MOTIONS), rng.choice(SHAPES)
    speed, size, textured = float(rng.choice(SPEEDS)), float(rng.choice(SIZES)), bool(rng.random() < 0.5)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    background = 40 + 0.45 * _gradient(rng, yy, xx)
    paint = _paint(rng, textured)
    cx, cy = rng.uniform(0.35, 0.65, 2) * SIZE
    radius, angle = size * SIZE, rng.uniform(0, 2 * np.pi)
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for i, t in enumerate(np.linspace(-0.5, 0.5, FRAMES)):
        x, r, turn, gain = cx, radius, angle, 1.0
        if kind == "translate":
            x = cx + t * 0.12 * speed * SIZE  # forward: to the right
        elif kind == "rotate":
            turn = angle + t * np.radians(25 * speed)  # forward: clockwise on screen (y points down)
        elif kind == "scale":
            r = radius * (1 + t * 0.25 * speed)  # forward: growing
        else:
            gain = 1 + t * 0.25 * speed  # forward: brightening
        frame = _draw(background, paint, xx, yy, x, cy, r, turn, shape) * gain
        frames[i] = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    return (frames if forward else frames[::-1]), {
        "motion": kind,
        "shape": shape,
        "speed": speed,
        "size": size,
        "textured": textured,
    }


def render_clutter(rng: np.random.Generator, forward: bool) -> tuple[np.ndarray, dict]:
    """Frames of one `clutter` clip: small objects moving right (forward) or left over static blobs."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    background = 30 + 0.3 * _gradient(rng, yy, xx)
    for _ in range(int(rng.integers(25, 45))):  # the clutter: blobs of the same sizes and colours as the objects
        background = _draw(
            background,
            _paint(rng, bool(rng.random() < 0.5)),
            xx,
            yy,
            *rng.uniform(0, SIZE, 2),
            rng.uniform(0.03, 0.08) * SIZE,
            rng.uniform(0, 2 * np.pi),
            rng.choice(SHAPES),
        )
    speed, count = float(rng.choice(SPEEDS)), int(rng.integers(1, 4))
    objects = [
        (
            _paint(rng, bool(rng.random() < 0.5)),
            rng.uniform(0.25, 0.75) * SIZE,
            rng.uniform(0.12, 0.88) * SIZE,
            rng.uniform(0.04, 0.08) * SIZE,
            rng.uniform(0, 2 * np.pi),
            rng.choice(SHAPES),
        )
        for _ in range(count)
    ]
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for i, t in enumerate(np.linspace(-0.5, 0.5, FRAMES)):
        frame = background
        for paint, x, y, r, angle, shape in objects:
            frame = _draw(frame, paint, xx, yy, x + t * 0.15 * speed * SIZE, y, r, angle, shape)
        frames[i] = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    return (frames if forward else frames[::-1]), {"objects": count, "speed": speed}


def real_windows(
    total: int, fps: float, per_video: int, speeds: tuple[int, ...] = WINDOW_SPEEDS
) -> list[tuple[int, int]]:
    """(frame step, start) of the FRAMES-frame windows of a video: up to `per_video` per speed, overlapping by at most
    half.

    Speed 1 takes about WINDOW_FPS frames per second of the source, speed k every k-th of those; a
    step shrinks to fit a video too short for one window at it (equal steps are taken once), and a
    video shorter than FRAMES frames has no window.
    """
    if total < FRAMES:
        return []
    base = max(1, round((fps or 30.0) / WINDOW_FPS))
    steps = sorted({min(base * speed, (total - 1) // (FRAMES - 1)) for speed in speeds})
    windows = []
    for step in steps:
        span = (FRAMES - 1) * step + 1
        count = min(per_video, 1 + (total - span) // max(1, span // 2))
        windows += [(step, int(start)) for start in np.linspace(0, total - span, count).round()]
    return windows


def write_synthetic_clips(task: str, clips: Path, count: int, seed: int) -> list[dict]:
    """`count` clips of a synthetic task, labels alternating; each clip is its own group."""
    render = render_motion if task == "motion" else render_clutter
    labels = ("forward", "backward") if task == "motion" else ("right", "left")
    rows = []
    for number in range(count):
        label = labels[number % 2]
        path = clips / f"{task}_{number:04d}.mp4"
        rng = np.random.default_rng([seed, SYNTHETIC_TASKS.index(task), number])
        frames, drawn = render(rng, forward=label == labels[0])
        if not path.exists():
            write_clip(path, frames, FPS)
        rows.append(
            {
                "path": str(path),
                "label": label,
                "group": path.stem,
                **{k: str(v) if isinstance(v, np.str_) else v for k, v in drawn.items()},
            }
        )
    return rows


def write_arrow_clips(clips: Path, videos: Path, per_video: int, image_size: int) -> list[dict]:
    """Each window of each good real video, written forward and reversed; `group` = the source video."""
    from pipeline.extract.decode import DecodeError, probe_video

    sources = sorted(
        p for p in videos.glob("*/*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.parent.name != "broken"
    )
    if not sources:
        raise FileNotFoundError(
            f"no videos under {videos}/*/ for the arrow task; pass --shared-data (the folder holding videos/)"
        )
    rows = []
    for source in sources:
        try:
            total, fps, _, _ = probe_video(source)
            windows = real_windows(total, fps, per_video)
            if not windows:
                log.info("arrow: %s has %d frames, fewer than %d: no window", source, total, FRAMES)
            for step, start in windows:
                rows += _arrow_window(clips, source, step, start, fps, image_size)
        except DecodeError as error:
            log.warning("arrow: %s left out: %s", source, error.reason)
    log.info("arrow: %d windows from %d source groups", len(rows) // 2, len({row["group"] for row in rows}))
    return rows


def _arrow_window(clips: Path, source: Path, step: int, start: int, fps: float, image_size: int) -> list[dict]:
    """One window of `source` written forward and reversed (kept if both exist); its two manifest rows."""
    from pipeline.extract.decode import Sampling, decode_video

    name = f"{source.parent.name}_{source.name.replace('.', '_')}_s{step}_{start:05d}"
    paths = {label: clips / f"{name}_{label}.mp4" for label in ("forward", "reversed")}
    if not all(path.exists() for path in paths.values()):
        decoded = decode_video(
            source, image_size, Sampling("stride", step), frame_range=(start, start + (FRAMES - 1) * step + 1)
        )
        write_clip(paths["forward"], decoded.frames, max(1, round((fps or 30.0) / step)))
        write_clip(paths["reversed"], decoded.frames[::-1], max(1, round((fps or 30.0) / step)))
    group = f"{source.parent.name}/{source.stem}"  # flower.mp4 / .webm / .ogg are one source
    return [
        {"path": str(path), "label": label, "group": group, "source": str(source), "start": start, "step": step}
        for label, path in paths.items()
    ]


def _gradient(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A random two-colour linear gradient at a random angle, (SIZE, SIZE, 3) in 0..255."""
    first, second = rng.uniform(0, 255, (2, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    ramp = ((ramp - ramp.min()) / (np.ptp(ramp) + 1e-6))[..., None]
    return first * (1 - ramp) + second * ramp


def _paint(rng: np.random.Generator, textured: bool) -> tuple:
    """A shape's look: two colours and, if textured, a grating (frequency, phase) in the shape's own coordinates."""
    colours = rng.uniform(60, 255, (2, 3)).astype(np.float32)
    return colours, (rng.uniform(1.5, 3.5), rng.uniform(0, 2 * np.pi)) if textured else None


def _draw(
    frame: np.ndarray, paint: tuple, xx, yy, cx: float, cy: float, r: float, angle: float, shape: str
) -> np.ndarray:
    """`frame` with a shape of radius `r` centred at (cx, cy), turned by `angle`, painted over it."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * cos + (yy - cy) * sin) / r  # the shape's own coordinates, so texture turns and moves with it
    v = (-(xx - cx) * sin + (yy - cy) * cos) / r
    if shape == "square":
        inside = (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    elif shape == "triangle":
        inside = (v <= 0.6) & (v >= 1.8 * np.abs(u) - 1.0)
    else:
        inside = u**2 + (v / 0.55) ** 2 <= 1
    (first, second), grating = paint
    if grating is None:
        colour = np.broadcast_to(first, frame.shape)
    else:
        frequency, phase = grating
        mix = (0.5 + 0.5 * np.sin(2 * np.pi * frequency * u + phase))[..., None]
        colour = first * mix + second * (1 - mix)
    return np.where(inside[..., None], colour, frame)
