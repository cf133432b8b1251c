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
settings are kept, so a rerun extracts nothing again and only retrains. OUTPUT must be new, empty, or
a benchmark output (the tool's marker, or an earlier version's results.json or clip stamps): the
benchmark never writes into, or overwrites results in, a folder it did not make.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from pipeline.bench.temporal_tasks import FRAMES, SIZE, WINDOW_SPEEDS, write_arrow_clips, write_synthetic_clips
from pipeline.core.errors import InputError
from pipeline.dataset.manifest import read_manifest, write_manifest
from pipeline.runs import folders

log = logging.getLogger(__name__)

TASKS = ("motion", "clutter", "arrow")
RENDER_VERSION = "1"  # bump when a renderer changes: clips of another version are rewritten
SYNTHETIC_FEATURES = {"backbone": "vgg16", "weights": "none", "image_size": SIZE}
REAL_WEIGHTS = "weights/mobilenet_v2_1.0_no_top_dogbreeds.weights.h5"  # under the shared data
TARGETS = {"motion": 0.95, "clutter": 0.95, "arrow": 0.85}
BASELINE_MARGIN = 0.1  # motion, clutter: the best order-blind baseline must stay this close to chance


def measured_training() -> dict:
    """The TrainConfig overrides chosen on this benchmark (README): deltas alone, each grid cell projected to 32 units
    by one
    shared Dense, 128 recurrent units, dropout 0.5, learning rate 3e-4.

    Not `train`'s defaults: the lower learning rate takes more epochs, which would slow the demo's training.
    """
    from pipeline.classify.models import SequenceModelConfig

    return {
        "network": SequenceModelConfig(units=128, dropout=0.5, inputs=("deltas",), cell_units=32),
        "learning_rate": 3e-4,
    }


@dataclass(frozen=True)
class BenchConfig:
    """What the benchmark builds and how it trains; `train` holds the TrainConfig overrides."""

    output: str = "reports/temporal-bench"
    shared_data: str = ""
    tasks: tuple[str, ...] = TASKS
    motion_clips: int = 1440
    clutter_clips: int = 1200
    windows_per_video: int = 12  # per speed (temporal_tasks.WINDOW_SPEEDS)
    real_image_size: int = 160
    pooling: str = "grid3"  # of the synthetic tasks' features (backbones.POOLINGS)
    real_pooling: str = "avg"  # of the arrow task's features
    seed: int = 0
    train: dict = field(default_factory=measured_training)  # TrainConfig overrides

    def __post_init__(self):
        unknown = [task for task in self.tasks if task not in TASKS]
        if unknown or not self.tasks:
            raise InputError(f"unknown task(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(TASKS)}")
        if min(self.motion_clips, self.clutter_clips) < 40 or self.windows_per_video < 1:
            raise InputError("the synthetic tasks need at least 40 clips each, and arrow at least one window per video")


def run_benchmark(config: BenchConfig, progress: bool = True) -> pd.DataFrame:
    """Build every task, extract its features, train all models; write and return the results table."""
    from pipeline.classify.config import TrainConfig
    from pipeline.classify.train import train
    from pipeline.runs.layout import ALL_MODELS

    output = Path(config.output)
    if "arrow" in config.tasks:  # before minutes of work on the other tasks
        for needed in (Path(_shared_data(config)) / "videos", Path(_shared_data(config)) / REAL_WEIGHTS):
            if not needed.exists():
                raise FileNotFoundError(
                    f"the arrow task needs {needed}; pass --shared-data (the folder holding videos/ and weights/) "
                    f"or set SHARED_DATA, or leave arrow out with --tasks motion,clutter"
                )
    claim_output(output)
    rows = []
    for task in config.tasks:
        manifest = build_task(task, output / task, config)
        store_path = _extract(task, manifest, output, config, progress)
        train_config = TrainConfig(
            **{
                "models": ALL_MODELS,
                "seq_len": FRAMES,
                "test_size": 0.3 if task == "arrow" else 0.15,
                "seed": config.seed,
                **config.train,
            }
        )
        result = train(store_path, output / "runs" / task, train_config, overwrite=True, progress=progress)
        rows += _result_rows(task, result)
    table = pd.DataFrame(rows)
    write_results(table, output, config)
    return table


def claim_output(output: Path) -> None:
    """Make sure `output` is the benchmark's before writing into it (`folders.FolderError` otherwise): a
    folder of reports it marked, a new or empty one, or one an earlier version wrote (see `_is_earlier_output`)."""
    output = Path(output)
    folders.claim_folder(output, "reports", recognised=output.is_dir() and _is_earlier_output(output))


def build_task(task: str, folder: Path, config: BenchConfig) -> Path:
    """Write one task's clips into `folder/clips` and its manifest `folder/<task>.csv`; return the manifest."""
    clips = folder / "clips"
    settings = (
        f"size={config.real_image_size} windows={config.windows_per_video}x{WINDOW_SPEEDS}"
        if task == "arrow"
        else f"size={SIZE}"
    )
    _reset_if_stale(clips, f"{RENDER_VERSION} {task} seed={config.seed} {settings}")
    if task == "arrow":
        rows = write_arrow_clips(
            clips, Path(_shared_data(config)) / "videos", config.windows_per_video, config.real_image_size
        )
    else:
        count = config.motion_clips if task == "motion" else config.clutter_clips
        rows = write_synthetic_clips(task, clips, count, config.seed)
    pd.DataFrame(rows).to_csv(
        folder / f"{task}-clips.csv", index=False
    )  # what each clip shows, for per-kind breakdowns
    return write_manifest(pd.DataFrame(rows), folder / f"{task}.csv")


def write_results(table: pd.DataFrame, output: Path, config: BenchConfig) -> list[Path]:
    """results.csv, results.json (with the settings) and results.md in `output`."""
    output.mkdir(parents=True, exist_ok=True)
    paths = [output / "results.csv", output / "results.json", output / "results.md"]
    table.to_csv(paths[0], index=False)
    paths[1].write_text(
        json.dumps({"config": asdict(config), "results": table.to_dict("records")}, indent=1, default=str)
    )
    paths[2].write_text(markdown_table(table) + "\n")
    return paths


def markdown_table(table: pd.DataFrame) -> str:
    """One row per task and model: test accuracy beside chance, the best baseline and the target."""
    lines = [
        "| task | model | test accuracy | macro-F1 | chance | best order-blind | target | met | test clips | "
        "epochs | seconds |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- | --- | ---: | ---: | ---: |",
    ]
    for row in table.itertuples():
        lines.append(
            f"| {row.task} | {row.model}{'' if row.kind == 'sequence' else ' (order-blind)'} | {row.accuracy:.3f} | "
            f"{row.macro_f1:.3f} | {row.chance:.3f} | {row.best_order_blind:.3f} | {row.target} | "
            f"{'' if row.kind != 'sequence' else ('yes' if row.met else 'no')} | {row.test_clips} | "
            f"{'' if pd.isna(row.epochs) else int(row.epochs)} | {row.seconds:.1f} |"
        )
    return "\n".join(lines)


# --- helpers ---------------------------------------------------------------------------------


def _shared_data(config: BenchConfig) -> str:
    """The shared data folder: the option, else $SHARED_DATA (`make temporal-bench` passes ../shared/data)."""
    import os

    return config.shared_data or os.environ.get("SHARED_DATA", "")


def _is_earlier_output(output: Path) -> bool:
    """Written by an earlier version (no marker): its results.json, or a task's stamped clip folder."""
    try:
        results = json.loads((output / "results.json").read_text())
        if isinstance(results, dict) and {"config", "results"} <= results.keys():
            return True
    except (OSError, ValueError):
        pass
    return any((output / task / "clips" / ".render-version").is_file() for task in TASKS)


def _reset_if_stale(clips: Path, version: str) -> None:
    """Remove clips written by another renderer version or seed (kept otherwise: same files, same store keys).

    A non-empty folder without the benchmark's stamp was not made by it and is refused, not removed.
    """
    stamp = clips / ".render-version"
    if clips.is_dir() and any(clips.iterdir()) and not stamp.is_file():
        raise InputError(
            f"{clips} exists and was not written by temporal-bench (no {stamp.name}); not touching it: pass "
            "another --output"
        )
    if stamp.is_file() and stamp.read_text() != version:
        shutil.rmtree(clips)
    clips.mkdir(parents=True, exist_ok=True)
    stamp.write_text(version)


def _extract(task: str, manifest: Path, output: Path, config: BenchConfig, progress: bool) -> Path:
    """Features of one task's clips: random VGG16 at 96 px (synthetic), dog-breeds MobileNetV2 (real footage)."""
    from pipeline.extract.backbones import Weights, load_backbone, resolve_precision
    from pipeline.extract.config import FeatureConfig
    from pipeline.extract.run import extract_features, store_path_for, worker_count

    if task == "arrow":
        weights = Weights.parse(str(Path(_shared_data(config)) / REAL_WEIGHTS))
        settings = {"backbone": "mobilenet_v2", "weights": weights.identity, "image_size": config.real_image_size}
    else:
        weights, settings = Weights("none"), SYNTHETIC_FEATURES
    feature_config = FeatureConfig(
        **settings,
        sampling=f"uniform:{FRAMES}",
        precision=resolve_precision("auto", settings["backbone"]),
        pooling=config.real_pooling if task == "arrow" else config.pooling,
    )
    backbone = load_backbone(
        feature_config.backbone,
        weights,
        feature_config.image_size,
        precision=feature_config.precision,
        pooling=feature_config.pooling,
    )
    store_path = store_path_for(manifest, feature_config, output / "features")
    summary = extract_features(
        read_manifest(manifest),
        store_path,
        backbone,
        feature_config,
        weights=weights,
        attrs={"manifest": str(manifest.resolve()), "weights_path": weights.path},
        workers=worker_count(),
        progress=progress,
    )
    log.info("%s: %s", task, summary.line())
    if summary.failed:
        raise RuntimeError(
            f"{summary.failed} clips of task {task} failed to extract; see {store_path.with_suffix('')}.failures.csv"
        )
    return store_path


def _result_rows(task: str, result) -> list[dict]:
    """The run's metrics as table rows, each with the task's chance level and best order-blind score."""
    predictions = pd.read_csv(result.run_dir / "model" / "predictions.csv")
    first = predictions[predictions["model"] == predictions["model"].iloc[0]]
    chance = float(first["true"].value_counts(normalize=True).max())
    blind = max(m["accuracy"] for m in result.metrics.values() if m["kind"] == "order-blind")
    splits = split_sizes(result.run_dir)
    log.info("%s: %s", task, splits)
    rows = []
    for name, metrics in result.metrics.items():
        met = metrics["accuracy"] >= TARGETS[task] and (task == "arrow" or blind <= chance + BASELINE_MARGIN)
        rows.append(
            {
                "task": task,
                "model": name,
                "kind": metrics["kind"],
                "accuracy": metrics["accuracy"],
                "macro_f1": metrics["macro_f1"],
                "chance": chance,
                "best_order_blind": blind,
                "target": f">= {TARGETS[task]}"
                + ("" if task == "arrow" else f", order-blind <= chance + {BASELINE_MARGIN}"),
                "met": bool(met),
                "test_clips": len(first),
                "epochs": metrics["epochs"] or None,
                "seconds": metrics["seconds"],
                "splits": splits,
                "run": str(result.run_dir),
            }
        )
    return rows


def split_sizes(run_dir: Path) -> str:
    """Clips and groups (source videos, for arrow) per split of a run, e.g. `train 258 clips / 10 groups, ...`."""
    splits = pd.read_csv(Path(run_dir) / "model" / "splits.csv")
    sizes = splits.groupby("split").agg(clips=("video_id", "size"), groups=("group", "nunique"))
    return ", ".join(
        f"{split} {row.clips} clips / {row.groups} groups"
        for split, row in sizes.reindex(["train", "val", "test"]).dropna().astype(int).iterrows()
    )
