"""Benchmark of temporal tasks (`make temporal-bench`): can the sequence models find the direction of time?

Three tasks, each a binary classification whose classes differ only in the direction of time, so
an order-blind model is at chance by construction (the frames of a clip and of its reversal are the
same set) and every point above chance is learned from frame order:

  motion   direction of a motion of one textured or plain shape (square, triangle, ellipse) over a
           smooth background: translation (right / left), rotation (clockwise / anticlockwise),
           scaling (grow / shrink) or a brightness ramp (brighten / darken), at three speeds and three
           sizes. Label `forward` is the first of each pair, `backward` the second.
  clutter  one to three small objects (4-8% of the frame) moving together, `right` or `left`, at three
           speeds, over a static cluttered background of random blobs.
  arrow    arrow of time on real footage: 16-frame windows cut from the good videos of the shared
           data (`videos/*/*`, not `broken/`), each used `forward` and `reversed`; `group` is the
           source video (the same stem in one folder, e.g. flower.mp4 / .webm / .ogg), so no video
           straddles train and test.

For each task the clips are written with PyAV into `OUTPUT/<task>/clips/`, a manifest beside them,
then `features` and `train --model all` run through the package's API, and the table of test
accuracy per task and model (beside chance, the best order-blind baseline and the target) goes to
`OUTPUT/results.csv`, `results.json` and `results.md` (`OUTPUT/<task>/<task>-clips.csv` says what
each clip shows: motion, shape, speed, size, texture, source window). Clips already written with the same
settings are kept, so a rerun extracts nothing again and only retrains.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .demo_data import write_clip
from .manifest import VIDEO_EXTENSIONS, read_manifest, write_manifest

log = logging.getLogger(__name__)

TASKS = ("motion", "clutter", "arrow")
SIZE, FRAMES, FPS = 96, 16, 12  # synthetic clips: 96 x 96 px, 16 frames
MOTIONS = ("translate", "rotate", "scale", "brightness")
SHAPES = ("square", "triangle", "ellipse")
SPEEDS = (1.0, 2.0, 3.0)  # multiples of each motion's slowest rate
SIZES = (0.12, 0.18, 0.26)  # shape radius as a share of the frame
WINDOW_FPS = 10.0  # real-footage windows take about this many frames per second of the source
RENDER_VERSION = "1"  # bump when a renderer changes: clips of another version are rewritten
SYNTHETIC_FEATURES = {"backbone": "vgg16", "weights": "none", "image_size": SIZE}
REAL_WEIGHTS = "weights/mobilenet_v2_1.0_no_top_dogbreeds.weights.h5"  # under the shared data
TARGETS = {"motion": 0.95, "clutter": 0.95, "arrow": 0.85}
BASELINE_MARGIN = 0.1  # motion, clutter: the best order-blind baseline must stay this close to chance


def measured_network():
    """The sequence models' settings chosen on this benchmark (README): deltas beside the features, 128 units.

    Not `train`'s defaults: on the demo they train until the epoch limit (100 epochs against 47-57),
    since the validation loss keeps creeping down, which would double the demo's training time.
    """
    from .models import SequenceModelConfig

    return SequenceModelConfig(units=128, inputs=("features", "deltas"))


@dataclass(frozen=True)
class BenchConfig:
    """What the benchmark builds and how it trains; `train` holds the TrainConfig overrides."""

    output: str = "reports/temporal-bench"
    shared_data: str = ""
    tasks: tuple[str, ...] = TASKS
    motion_clips: int = 480
    clutter_clips: int = 320
    windows_per_video: int = 12
    real_image_size: int = 160
    seed: int = 0
    train: dict = field(default_factory=lambda: {"network": measured_network()})  # TrainConfig overrides

    def __post_init__(self):
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown or not self.tasks:
            raise ValueError(f"unknown task(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TASKS)}")
        if min(self.motion_clips, self.clutter_clips) < 40 or self.windows_per_video < 1:
            raise ValueError("the synthetic tasks need at least 40 clips each, and arrow at least one window per video")


def run_benchmark(config: BenchConfig, progress: bool = True) -> pd.DataFrame:
    """Build every task, extract its features, train all models; write and return the results table."""
    from .models import ALL_MODELS
    from .train import TrainConfig, train

    output = Path(config.output)
    if "arrow" in config.tasks:  # before minutes of work on the other tasks
        for needed in (Path(_shared_data(config)) / "videos", Path(_shared_data(config)) / REAL_WEIGHTS):
            if not needed.exists():
                raise FileNotFoundError(f"the arrow task needs {needed}; pass --shared-data (the folder holding videos/ and weights/) "
                                        f"or set SHARED_DATA, or leave arrow out with --tasks motion,clutter")
    rows = []
    for task in config.tasks:
        manifest = build_task(task, output / task, config)
        store_path = _extract(task, manifest, output, config, progress)
        train_config = TrainConfig(**{"models": ALL_MODELS, "seq_len": FRAMES, "test_size": 0.3 if task == "arrow" else 0.15,
                                      "seed": config.seed, **config.train})
        result = train(store_path, output / "runs" / task, train_config, overwrite=True, progress=progress)
        rows += _result_rows(task, result)
    table = pd.DataFrame(rows)
    write_results(table, output, config)
    return table


def build_task(task: str, folder: Path, config: BenchConfig) -> Path:
    """Write one task's clips into `folder/clips` and its manifest `folder/<task>.csv`; return the manifest."""
    clips = folder / "clips"
    _reset_if_stale(clips, f"{RENDER_VERSION} {task} seed={config.seed} size={config.real_image_size if task == 'arrow' else SIZE}")
    if task == "arrow":
        rows = _write_arrow_clips(clips, Path(_shared_data(config)) / "videos", config)
    else:
        count = config.motion_clips if task == "motion" else config.clutter_clips
        rows = _write_synthetic_clips(task, clips, count, config.seed)
    pd.DataFrame(rows).to_csv(folder / f"{task}-clips.csv", index=False)  # what each clip shows, for per-kind breakdowns
    return write_manifest(pd.DataFrame(rows), folder / f"{task}.csv")


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
    return (frames if forward else frames[::-1]), {"motion": kind, "shape": shape, "speed": speed, "size": size, "textured": textured}


def render_clutter(rng: np.random.Generator, forward: bool) -> tuple[np.ndarray, dict]:
    """Frames of one `clutter` clip: small objects moving right (forward) or left over static blobs."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    background = 30 + 0.3 * _gradient(rng, yy, xx)
    for _ in range(int(rng.integers(25, 45))):  # the clutter: blobs of the same sizes and colours as the objects
        background = _draw(background, _paint(rng, bool(rng.random() < 0.5)), xx, yy, *rng.uniform(0, SIZE, 2),
                           rng.uniform(0.03, 0.08) * SIZE, rng.uniform(0, 2 * np.pi), rng.choice(SHAPES))
    speed, count = float(rng.choice(SPEEDS)), int(rng.integers(1, 4))
    objects = [(_paint(rng, bool(rng.random() < 0.5)), rng.uniform(0.25, 0.75) * SIZE, rng.uniform(0.12, 0.88) * SIZE,
                rng.uniform(0.04, 0.08) * SIZE, rng.uniform(0, 2 * np.pi), rng.choice(SHAPES)) for _ in range(count)]
    frames = np.empty((FRAMES, SIZE, SIZE, 3), np.uint8)
    for i, t in enumerate(np.linspace(-0.5, 0.5, FRAMES)):
        frame = background
        for paint, x, y, r, angle, shape in objects:
            frame = _draw(frame, paint, xx, yy, x + t * 0.15 * speed * SIZE, y, r, angle, shape)
        frames[i] = np.clip(frame + rng.normal(0, 4, frame.shape), 0, 255).astype(np.uint8)
    return (frames if forward else frames[::-1]), {"objects": count, "speed": speed}


def real_windows(total: int, fps: float, per_video: int) -> tuple[int, list[int]]:
    """(frame step, window starts) of up to `per_video` non-overlapping FRAMES-frame windows of a video.

    The step takes about WINDOW_FPS frames per second of the source, less when the video is too
    short for one window at that step; a video shorter than FRAMES frames has no window.
    """
    if total < FRAMES:
        return 1, []
    step = max(1, min(round((fps or 30.0) / WINDOW_FPS), (total - 1) // (FRAMES - 1)))
    span = (FRAMES - 1) * step + 1
    count = min(per_video, total // span)
    return step, [int(s) for s in np.linspace(0, total - span, count).round()]


def write_results(table: pd.DataFrame, output: Path, config: BenchConfig) -> list[Path]:
    """results.csv, results.json (with the settings) and results.md in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / "results.csv", output / "results.json", output / "results.md"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(json.dumps({"config": asdict(config), "results": table.to_dict("records")}, indent=1, default=str))
    paths[2].write_text(markdown_table(table) + "\n")
    return paths


def markdown_table(table: pd.DataFrame) -> str:
    """One row per task and model: test accuracy beside chance, the best baseline and the target."""
    lines = ["| task | model | test accuracy | macro-F1 | chance | best order-blind | target | met | test clips | epochs | seconds |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
    for row in table.itertuples():
        lines.append(f"| {row.task} | {row.model}{'' if row.kind == 'sequence' else ' (order-blind)'} | {row.accuracy:.3f} | "
                     f"{row.macro_f1:.3f} | {row.chance:.3f} | {row.best_order_blind:.3f} | {row.target} | "
                     f"{'' if row.kind != 'sequence' else ('yes' if row.met else 'no')} | {row.test_clips} | "
                     f"{'' if pd.isna(row.epochs) else int(row.epochs)} | {row.seconds:.1f} |")
    return "\n".join(lines)


# --- helpers ---------------------------------------------------------------------------------


def _shared_data(config: BenchConfig) -> str:
    """The shared data folder: the option, else $SHARED_DATA, else ../shared/data beside the checkout."""
    import os

    return config.shared_data or os.environ.get("SHARED_DATA") or str(Path(__file__).resolve().parents[2] / "shared" / "data")


def _reset_if_stale(clips: Path, version: str) -> None:
    """Remove clips written by another renderer version or seed (kept otherwise: same files, same store keys).

    A non-empty folder without the benchmark's stamp was not made by it and is refused, not removed.
    """
    stamp = clips / ".render-version"
    if clips.is_dir() and any(clips.iterdir()) and not stamp.is_file():
        raise ValueError(f"{clips} exists and was not written by temporal-bench (no {stamp.name}); not touching it: pass another --output")
    if stamp.is_file() and stamp.read_text() != version:
        shutil.rmtree(clips)
    clips.mkdir(parents=True, exist_ok=True)
    stamp.write_text(version)


def _write_synthetic_clips(task: str, clips: Path, count: int, seed: int) -> list[dict]:
    render = render_motion if task == "motion" else render_clutter
    labels = ("forward", "backward") if task == "motion" else ("right", "left")
    rows = []
    for number in range(count):
        label = labels[number % 2]
        path = clips / f"{task}_{number:04d}.mp4"
        rng = np.random.default_rng([seed, TASKS.index(task), number])
        frames, drawn = render(rng, forward=label == labels[0])
        if not path.exists():
            write_clip(path, frames, FPS)
        rows.append({"path": str(path), "label": label, "group": path.stem, **{k: str(v) if isinstance(v, np.str_) else v for k, v in drawn.items()}})
    return rows


def _write_arrow_clips(clips: Path, videos: Path, config: BenchConfig) -> list[dict]:
    """Each window of each good real video, written forward and reversed; `group` = the source video."""
    from .decode import DecodeError, Sampling, decode_video, probe_video

    sources = sorted(p for p in videos.glob("*/*") if p.suffix.lower() in VIDEO_EXTENSIONS and p.parent.name != "broken")
    if not sources:
        raise FileNotFoundError(f"no videos under {videos}/*/ for the arrow task; pass --shared-data (the folder holding videos/)")
    rows = []
    for source in sources:
        group = f"{source.parent.name}/{source.stem}"
        try:
            total, fps, _, _ = probe_video(source)
            step, starts = real_windows(total, fps, config.windows_per_video)
            if not starts:
                log.info("arrow: %s has %d frames, fewer than %d: no window", source, total, FRAMES)
            for start in starts:
                name = f"{source.parent.name}_{source.name.replace('.', '_')}_{start:05d}"
                paths = {label: clips / f"{name}_{label}.mp4" for label in ("forward", "reversed")}
                if not all(path.exists() for path in paths.values()):
                    decoded = decode_video(source, config.real_image_size, Sampling("stride", step), frame_range=(start, start + (FRAMES - 1) * step + 1))
                    write_clip(paths["forward"], decoded.frames, max(1, round((fps or 30.0) / step)))
                    write_clip(paths["reversed"], decoded.frames[::-1], max(1, round((fps or 30.0) / step)))
                rows += [{"path": str(path), "label": label, "group": group, "source": str(source), "start": start, "step": step}
                         for label, path in paths.items()]
        except DecodeError as error:
            log.warning("arrow: %s left out: %s", source, error.reason)
    log.info("arrow: %d windows from %d source groups", len(rows) // 2, len({row["group"] for row in rows}))
    return rows


def _extract(task: str, manifest: Path, output: Path, config: BenchConfig, progress: bool) -> Path:
    """Features of one task's clips: random VGG16 at 96 px (synthetic), dog-breeds MobileNetV2 (real footage)."""
    from .backbones import Weights, load_backbone, resolve_precision
    from .extract import FeatureConfig, extract_features, store_path_for, worker_count

    if task == "arrow":
        weights = Weights.parse(str(Path(_shared_data(config)) / REAL_WEIGHTS))
        settings = {"backbone": "mobilenet_v2", "weights": weights.identity, "image_size": config.real_image_size}
    else:
        weights, settings = Weights("none"), SYNTHETIC_FEATURES
    feature_config = FeatureConfig(**settings, sampling=f"uniform:{FRAMES}", precision=resolve_precision("auto", settings["backbone"]))
    backbone = load_backbone(feature_config.backbone, weights, feature_config.image_size, precision=feature_config.precision)
    store_path = store_path_for(manifest, feature_config, output / "features")
    summary = extract_features(read_manifest(manifest), store_path, backbone, feature_config, weights=weights,
                               attrs={"manifest": str(manifest.resolve()), "weights_path": weights.path}, workers=worker_count(),
                               progress=progress)
    log.info("%s: %s", task, summary.line())
    if summary.failed:
        raise RuntimeError(f"{summary.failed} clips of task {task} failed to extract; see {store_path.with_suffix('')}.failures.csv")
    return store_path


def _result_rows(task: str, result) -> list[dict]:
    """The run's metrics as table rows, each with the task's chance level and best order-blind score."""
    predictions = pd.read_csv(result.run_dir / "model" / "predictions.csv")
    first = predictions[predictions["model"] == predictions["model"].iloc[0]]
    chance = float(first["true"].value_counts(normalize=True).max())
    blind = max(m["accuracy"] for m in result.metrics.values() if m["kind"] == "order-blind")
    rows = []
    for name, metrics in result.metrics.items():
        met = metrics["accuracy"] >= TARGETS[task] and (task == "arrow" or blind <= chance + BASELINE_MARGIN)
        rows.append({"task": task, "model": name, "kind": metrics["kind"], "accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"],
                     "chance": chance, "best_order_blind": blind, "target": f">= {TARGETS[task]}" + ("" if task == "arrow" else
                     f", order-blind <= chance + {BASELINE_MARGIN}"), "met": bool(met), "test_clips": len(first),
                     "epochs": metrics["epochs"] or None, "seconds": metrics["seconds"], "run": str(result.run_dir)})
    return rows


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


def _draw(frame: np.ndarray, paint: tuple, xx, yy, cx: float, cy: float, r: float, angle: float, shape: str) -> np.ndarray:
    """`frame` with a shape of radius `r` centred at (cx, cy), turned by `angle`, painted over it."""
    cos, sin = np.cos(angle), np.sin(angle)
    u = ((xx - cx) * cos + (yy - cy) * sin) / r  # the shape's own coordinates, so texture turns and moves with it
    v = (-(xx - cx) * sin + (yy - cy) * cos) / r
    if shape == "square":
        inside = (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)
    elif shape == "triangle":
        inside = (v <= 0.6) & (v >= 1.8 * np.abs(u) - 1.0)
    else:
        inside = u ** 2 + (v / 0.55) ** 2 <= 1
    (first, second), grating = paint
    if grating is None:
        colour = np.broadcast_to(first, frame.shape)
    else:
        frequency, phase = grating
        mix = (0.5 + 0.5 * np.sin(2 * np.pi * frequency * u + phase))[..., None]
        colour = first * mix + second * (1 - mix)
    return np.where(inside[..., None], colour, frame)

