"""Benchmark commands: `bench` (stage one's speed) and `temporal-bench` (sequence models on temporal tasks)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.cli.common import EXIT_OK, add_number

log = logging.getLogger("pipeline")


def add_commands(commands) -> None:
    _add_bench(commands)
    _add_temporal_bench(commands)


def _add_bench(commands) -> None:
    p = commands.add_parser(
        "bench",
        help="measure stage one: CNN-only, decode-only, end to end, naive baseline, memory",
        description="Benchmarks of stage one on real videos and demo clips; writes JSON and prints a Markdown table. "
        "`make bench` passes the videos and weights of the shared data.",
    )
    p.add_argument(
        "--videos",
        help="folder of real videos, and those of its sub-folders except broken/ (needed unless --only "
        "selects the store rows)",
    )
    p.add_argument(
        "--demo-manifest", default="manifests/demo.csv", help="demo manifest (make demo-data) (default: %(default)s)"
    )
    p.add_argument(
        "--weights", default="imagenet", help="MobileNetV2 weights: a file, or imagenet (default: %(default)s)"
    )
    p.add_argument("--output", default="reports/bench/bench.json", help="JSON results (default: %(default)s)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated row names or shell-style patterns to run, e.g. 'cnn_*,vgg16_*' for the CNN "
        "part alone, 'store_*' for the feature store's bookkeeping (a few minutes and 4 GB of scratch "
        "space in $BENCH_SCRATCH or /tmp) (default: every row)",
    )
    p.set_defaults(func=_cmd_bench)


def _bench_videos(folder: Path) -> list[str]:
    """The videos in `folder` and in its sub-folders, each file once (links resolved), leaving out hidden files and
    broken/."""
    from pipeline.dataset.importers import VIDEO_EXTENSIONS

    found = set()
    for path in [*folder.glob("*"), *folder.glob("*/*")]:
        target = path.resolve()
        if path.name.startswith(".") or "broken" in (path.parent.name, target.parent.name):
            continue
        if target.is_file() and target.suffix.lower() in VIDEO_EXTENSIONS:
            found.add(str(target))
    return sorted(found)


def _cmd_bench(args) -> int:
    from pipeline.bench.stage_one import run_all, store_only, table

    only = tuple(filter(None, args.only.split(",")))
    folder = Path(args.videos or "")
    if args.videos and not folder.is_dir():
        raise FileNotFoundError(f"--videos {args.videos}: not a folder; pass the folder that holds the videos")
    videos = _bench_videos(folder) if args.videos else []
    if not videos and not store_only(only):
        raise FileNotFoundError(
            f"no videos in or under {args.videos or '(none given)'}; pass --videos DIR (its videos and its "
            "sub-folders')"
        )
    if not Path(args.demo_manifest).is_file() and not store_only(only):
        raise FileNotFoundError(f"{args.demo_manifest} not found; run `make demo-data` first")
    results = run_all(videos, args.demo_manifest, args.weights, Path(args.output), only)
    print(table(results))
    log.info("wrote %s", args.output)
    return EXIT_OK


def _add_temporal_bench(commands) -> None:
    from pipeline.bench.temporal import TASKS, BenchConfig
    from pipeline.classify.config import TrainConfig
    from pipeline.classify.models import SequenceModelConfig
    from pipeline.core.config import SEED, Bound

    defaults = BenchConfig()
    clips = Bound(40, 100_000, unit="clips")
    bound = {
        "--motion-clips": clips,
        "--clutter-clips": clips,
        "--windows-per-video": Bound(1, 1000),
        "--seed": SEED,
        "--units": SequenceModelConfig.BOUNDS["units"],
        "--cell-units": SequenceModelConfig.BOUNDS["cell_units"],
        "--lr-patience": TrainConfig.BOUNDS["lr_patience"],
    }  # checked here, before minutes of work, as the configs check them later
    p = commands.add_parser(
        "temporal-bench",
        help="benchmark the sequence models on temporal tasks (direction of motion, arrow of time)",
        description="Build the temporal tasks (synthetic motion, small objects over clutter, arrow of time on the "
        "real videos of the shared data) into OUTPUT, extract features, train every model and write "
        "results.csv/.json/.md. Prints the Markdown table on stdout.",
    )
    p.add_argument(
        "--output", default=defaults.output, help="folder of the clips, stores, runs and results (default: %(default)s)"
    )
    p.add_argument(
        "--shared-data",
        default=os.environ.get("SHARED_DATA", ""),
        help="folder holding videos/ and weights/ for the arrow task (default: $SHARED_DATA)",
    )
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks from %(default)s")
    add_number(
        p,
        "--motion-clips",
        bound["--motion-clips"],
        default=defaults.motion_clips,
        help="clips of the motion task (default: %(default)s)",
    )
    add_number(
        p,
        "--clutter-clips",
        bound["--clutter-clips"],
        default=defaults.clutter_clips,
        help="clips of the clutter task (default: %(default)s)",
    )
    add_number(
        p,
        "--windows-per-video",
        bound["--windows-per-video"],
        default=defaults.windows_per_video,
        help="most windows cut from one real video (default: %(default)s)",
    )
    p.add_argument(
        "--pooling",
        choices=("avg", "grid2", "grid3"),
        default=defaults.pooling,
        help="features' pooling, synthetic tasks (default: %(default)s)",
    )
    p.add_argument(
        "--real-pooling",
        choices=("avg", "grid2", "grid3"),
        default=defaults.real_pooling,
        help="features' pooling, arrow task (default: %(default)s)",
    )
    add_number(
        p,
        "--seed",
        bound["--seed"],
        default=defaults.seed,
        help="seed of the clips, splits and training (default: %(default)s)",
    )
    p.add_argument("--inputs", help="features, deltas or features,deltas (default: deltas, measured best here)")
    add_number(p, "--units", bound["--units"], help="recurrent units (default: 128, measured best here)")
    add_number(
        p,
        "--cell-units",
        bound["--cell-units"],
        help="units of the Dense shared by the grid cells, 0 off (default: 32, measured best here)",
    )
    p.add_argument(
        "--bidirectional", action="store_true", default=None, help="train override: bidirectional recurrent layers"
    )
    add_number(
        p,
        "--lr-patience",
        bound["--lr-patience"],
        help="train override: epochs before the learning rate drops, 0 constant (default: train's)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_temporal_bench)


def _cmd_temporal_bench(args) -> int:
    from dataclasses import replace

    from pipeline.bench.temporal import BenchConfig, markdown_table, measured_training, run_benchmark
    from pipeline.classify.models import parse_inputs

    network = {
        key: value
        for key, value in (
            ("inputs", args.inputs and parse_inputs(args.inputs)),
            ("units", args.units),
            ("cell_units", args.cell_units),
            ("bidirectional", args.bidirectional),
        )
        if value is not None
    }
    train = measured_training()
    train["network"] = replace(train["network"], **network)
    if args.lr_patience is not None:
        train["lr_patience"] = args.lr_patience
    config = BenchConfig(
        args.output,
        args.shared_data,
        tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
        args.motion_clips,
        args.clutter_clips,
        args.windows_per_video,
        pooling=args.pooling,
        real_pooling=args.real_pooling,
        seed=args.seed,
        train=train,
    )
    print(markdown_table(run_benchmark(config, progress=not args.no_progress)))
    log.info("wrote %s", Path(args.output) / "results.md")
    return EXIT_OK
