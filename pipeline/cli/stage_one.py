"""The stage-one commands of the command line: features, inspect, compact, manifest, demo-data, bench.

Each `_add_*` declares a command whose defaults and choices come from the functions and
dataclasses it calls (so the two never disagree); each `_cmd_*` calls one of them.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path

from pipeline.cli.common import EXIT_OK, add_runtime

log = logging.getLogger("pipeline")


def add_commands(commands) -> None:
    _add_features(commands)
    _add_inspect(commands)
    _add_compact(commands)
    _add_manifest(commands)
    _add_demo_data(commands)
    _add_bench(commands)


def _defaults(function) -> dict:
    """The keyword defaults of `function`: the command line's defaults are the Python API's."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}


# --- features --------------------------------------------------------------------------------


def _add_features(commands) -> None:
    from pipeline.extract.backbones import PRECISIONS
    from pipeline.extract.config import (
        BATCH_SIZE,
        DECODE_TIMEOUT_S,
        DTYPES,
        FALLBACK,
        LOCK_TIMEOUT_S,
        SHARD_SIZE,
        STORES_DIR,
        FeatureConfig,
    )
    from pipeline.extract.decode import CROPS
    from pipeline.extract.decoder_pool import worker_count
    from pipeline.store.layout import POOLINGS

    config = FeatureConfig()
    p = commands.add_parser("features", help="stage one: decode the manifest's videos and store CNN features",
                            description="Decode every video of a manifest, embed sampled frames with a frozen CNN and store "
                                        "them in features/<manifest>/<config>-m<manifest hash>.h5. Reruns extract only what is missing and take "
                                        "labels, splits and groups from the manifest (rows that left it leave the store). "
                                        "Prints the store path on stdout.")
    p.add_argument("--manifest", required=True, help="manifest CSV (path,label[,split,group,video_id])")
    p.add_argument("--backbone", default=config.backbone, help="keras.applications model name (default: %(default)s)")
    p.add_argument("--weights", default=config.weights, help="imagenet, none (random, tests only) or a weights file path (default: %(default)s)")
    p.add_argument("--image-size", type=int, default=config.image_size, help="square CNN input size in pixels (default: %(default)s)")
    p.add_argument("--crop", choices=CROPS, default=config.crop, help="center: scale the short side, cut the centre; squash: scale to a square (default: %(default)s)")
    p.add_argument("--sampling", default=config.sampling, help="uniform:K, fps:F, stride:N or all (default: %(default)s)")
    p.add_argument("--max-frames", type=int, default=config.max_frames, help="cap on sampled frames per video, thinned evenly (default: %(default)s)")
    p.add_argument("--dtype", choices=DTYPES, default=config.dtype, help="stored feature dtype (default: %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",  # resolved per machine; a FeatureConfig holds the result
                   help="CNN arithmetic; auto = bfloat16 for VGG on CPUs that compute it natively, else float32 (default: %(default)s)")
    p.add_argument("--pooling", choices=POOLINGS, default=config.pooling,
                   help="pool the CNN's last feature map globally (avg) or per cell of a 2x2 / 3x3 grid, which keeps where things are "
                        "(4x / 9x the features; default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="frames per CNN batch (default: %(default)s)")
    add_runtime(p)
    p.add_argument("--workers", type=int, default=worker_count(), help="decoder processes, at the lowest CPU priority so they use what the CNN leaves (default: one per core, %(default)s)")
    p.add_argument("--scheduler", help="run on dask: 'local' for a LocalCluster on this machine, or a scheduler address "
                                       "tcp://HOST:8786 (default: in-process, measured faster on small machines)")
    p.add_argument("--dask-workers", type=int, help="worker processes of --scheduler local (default: half the cores)")
    p.add_argument("--timeout", type=float, default=DECODE_TIMEOUT_S, help="seconds one video may take to decode before it fails as 'timeout' (default: %(default)s)")
    p.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="videos per shard file; a killed run loses at most this many (default: %(default)s)")
    p.add_argument("--out-dir", default=STORES_DIR, help="root folder of the stores (default: %(default)s)")
    p.add_argument("--store", help="explicit store path instead of <out-dir>/<manifest name>/<config>-m<manifest path hash>.h5")
    p.add_argument("--skip-missing", action="store_true", help="record manifest rows whose file is missing as failures (stage 'missing') instead of refusing the manifest")
    p.add_argument("--retry-failed", action="store_true", help="retry videos that failed in an earlier run although their file did not change")
    p.add_argument("--fallback", action="store_true", help=f"if ImageNet weights are unavailable offline, use random {FALLBACK['backbone']} at "
                                                           f"{FALLBACK['image_size']} px instead (announced and recorded)")
    p.add_argument("--lock-timeout", type=float, default=LOCK_TIMEOUT_S, help="seconds to wait for another run's merge into the same store (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args) -> int:
    from pipeline.extract import run as extract
    from pipeline.extract.config import FeatureConfig

    config = FeatureConfig(backbone=args.backbone, image_size=args.image_size, crop=args.crop, sampling=args.sampling,
                                   max_frames=args.max_frames, dtype=args.dtype, precision=args.precision,
                                   pooling=args.pooling)
    summary = extract.extract_manifest(
        args.manifest, config, args.weights, store_path=args.store, out_dir=args.out_dir, batch_size=args.batch_size,
        runtime=args.runtime, fallback=args.fallback, skip_missing=args.skip_missing, workers=args.workers, scheduler=args.scheduler,
        dask_workers=args.dask_workers, timeout=args.timeout, shard_size=args.shard_size, retry_failed=args.retry_failed,
        progress=not args.no_progress, lock_timeout=args.lock_timeout)
    if summary.fallback:
        log.warning("this store uses the offline fallback backbone: %s", summary.fallback.split(". Reason:")[0])
    t = summary.timings
    log.info("time: decode %.1fs (in workers; main waited %.1fs), cnn %.1fs, write %.1fs", t["decode"], t["wait_decode"], t["cnn"], t["write"])
    log.info("%s", summary.line())
    if summary.failed or summary.known_failures:
        log.warning("failures are listed in %s", Path(f"{summary.store_path.with_suffix('')}.failures.csv"))
    print(summary.store_path)
    return summary.exit_code


# --- inspect ---------------------------------------------------------------------------------


def _add_inspect(commands) -> None:
    p = commands.add_parser("inspect", help="print a feature store's config, counts per label and split, frames and failures")
    p.add_argument("store", help="path of an .h5 feature store")
    p.add_argument("--json", action="store_true", help="print the video and failure tables as JSON instead")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args) -> int:
    from pipeline import store

    if args.json:
        payload = {"attrs": store.read_attrs(args.store), "videos": store.read_videos(args.store).to_dict("records"),
                   "failures": store.read_failures(args.store).to_dict("records")}
        print(json.dumps(payload, indent=1, default=str))
    else:
        print(store.summary(args.store))
    store.require_segments(args.store)  # after the summary, which lists them: exit 2 naming the missing files
    return EXIT_OK


# --- compact ---------------------------------------------------------------------------------


def _add_compact(commands) -> None:
    from pipeline.store import compact

    p = commands.add_parser("compact", help="reclaim a store's unreferenced frames, migrate an old store, or recover a broken one",
                            description="Copy the frames a store's video table references into one segment and delete the rest "
                                        "(replaced and retired videos); a store of the previous layout is migrated in place "
                                        "without copying. --recover rebuilds a store whose index is unreadable from its "
                                        "readable segments; the next `features` run completes it.")
    p.add_argument("store", help="path of an .h5 feature store")
    p.add_argument("--recover", action="store_true", help="rebuild the index from the readable segments (keeps the broken index as <store>.h5.broken)")
    p.add_argument("--lock-timeout", type=float, default=_defaults(compact)["lock_timeout"],
                   help="seconds to wait for a run merging into the store (default: %(default)s)")
    p.set_defaults(func=_cmd_compact)


def _cmd_compact(args) -> int:
    from pipeline import store

    if args.recover:
        result = store.recover(args.store, args.lock_timeout)
        for lost in result["lost_segments"]:
            log.warning("unreadable segment left out: %s", lost)
        log.info("recovered %d videos from %d segments into %s; run `python -m pipeline features` with its manifest to sync "
                 "it and re-extract what was lost", result["videos"], result["segments"], args.store)
    else:
        result = store.compact(args.store, args.lock_timeout)
        log.info("compacted %s: %d frame rows in %d segments -> %d in 1", args.store, result["frames_before"],
                 result["segments_before"], result["frames_after"])
    print(json.dumps(result))
    return EXIT_OK


# --- manifest importers ----------------------------------------------------------------------


def _add_manifest(commands) -> None:
    from pipeline.dataset.importers import from_ucf101
    from pipeline.dataset.manifest import SPLITS

    p = commands.add_parser("manifest", help="write a manifest CSV from a dataset layout, or check one")
    kinds = p.add_subparsers(dest="kind", required=True, metavar="LAYOUT")
    folders = kinds.add_parser("folders", help="a folder per class: ROOT/<label>/<video>")
    folders.add_argument("root")
    ucf = kinds.add_parser("ucf101", help="UCF101 split lists (classInd.txt, trainlist0N.txt, testlist0N.txt)")
    ucf.add_argument("--splits", required=True, help="folder with classInd.txt and the split lists")
    ucf.add_argument("--videos", required=True, help="folder holding <Class>/v_<Class>_gNN_cNN.avi")
    ucf.add_argument("--split", type=int, default=_defaults(from_ucf101)["split"], choices=(1, 2, 3),
                     help="which of the three splits (default: %(default)s)")
    lst = kinds.add_parser("list", help="mmaction2-style list: one 'path label' per line")
    lst.add_argument("list_file")
    lst.add_argument("--root", help="folder the paths are relative to (default: the list's folder)")
    lst.add_argument("--classes", help="file with one class name per line, if labels are indices")
    lst.add_argument("--split", default="", choices=("", *SPLITS), help="split to record for every row")
    kin = kinds.add_parser("kinetics", help="Kinetics annotation CSV (label,youtube_id,time_start,time_end,split)")
    kin.add_argument("csv")
    kin.add_argument("--root", required=True, help="folder holding the downloaded clips")
    for kind in (folders, ucf, lst, kin):
        kind.add_argument("-o", "--output", required=True, help="manifest CSV to write")
    check = kinds.add_parser("check", help="validate a manifest and print its counts")
    check.add_argument("manifest")
    check.add_argument("--skip-missing", action="store_true", help="drop rows whose file is missing instead of failing")
    p.set_defaults(func=_cmd_manifest)


def _cmd_manifest(args) -> int:
    from pipeline.dataset import importers
    from pipeline.dataset import manifest as m

    if args.kind == "check":
        frame = m.read_manifest(args.manifest, skip_missing=args.skip_missing)
        print(frame.groupby(["label", "split"]).size().rename("videos").to_string())
        log.info("%s: %d videos, %d labels, valid", args.manifest, len(frame), frame["label"].nunique())
        return EXIT_OK
    frame = {
        "folders": lambda: importers.from_class_folders(args.root),
        "ucf101": lambda: importers.from_ucf101(args.splits, args.videos, args.split),
        "list": lambda: importers.from_path_label_list(args.list_file, args.root, args.classes, args.split),
        "kinetics": lambda: importers.from_kinetics_csv(args.csv, args.root),
    }[args.kind]()
    path = m.write_manifest(frame, args.output)
    log.info("wrote %s: %d videos, %d labels", path, len(frame), frame["label"].nunique())
    print(path)
    return EXIT_OK


# --- demo data -------------------------------------------------------------------------------


def _add_demo_data(commands) -> None:
    from pipeline.dataset.demo import write_demo_dataset

    defaults = _defaults(write_demo_dataset)
    p = commands.add_parser("demo-data", help="write the synthetic demo dataset (temporal-order classes) and its manifest")
    p.add_argument("--output", default=defaults["folder"], help="folder for the clips (default: %(default)s)")
    p.add_argument("--manifest", default=defaults["manifest"], help="manifest to write (default: %(default)s)")
    p.add_argument("--per-class", type=int, default=defaults["per_class"], help="clips per class (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults["seed"], help="random seed; the same seed gives the same files (default: %(default)s)")
    p.set_defaults(func=_cmd_demo_data)


def _cmd_demo_data(args) -> int:
    from pipeline.dataset.demo import write_demo_dataset

    path = write_demo_dataset(args.output, args.manifest, per_class=args.per_class, seed=args.seed)
    print(path)
    return EXIT_OK


# --- bench -----------------------------------------------------------------------------------


def _add_bench(commands) -> None:
    p = commands.add_parser("bench", help="measure stage one: CNN-only, decode-only, end to end, naive baseline, memory",
                            description="Benchmarks of stage one on real videos and demo clips; writes JSON and prints a Markdown table. "
                                        "`make bench` passes the videos and weights of the shared data.")
    p.add_argument("--videos", help="folder of real videos, and those of its sub-folders except broken/ (needed unless --only selects the store rows)")
    p.add_argument("--demo-manifest", default="manifests/demo.csv", help="demo manifest (make demo-data) (default: %(default)s)")
    p.add_argument("--weights", default="imagenet", help="MobileNetV2 weights: a file, or imagenet (default: %(default)s)")
    p.add_argument("--output", default="reports/bench/bench.json", help="JSON results (default: %(default)s)")
    p.add_argument("--only", default="", help="comma-separated row names or shell-style patterns to run, e.g. 'cnn_*,vgg16_*' for the CNN "
                                              "part alone, 'store_*' for the feature store's bookkeeping (a few minutes and 4 GB of scratch "
                                              "space in $BENCH_SCRATCH or /tmp) (default: every row)")
    p.set_defaults(func=_cmd_bench)


def _bench_videos(folder: Path) -> list[str]:
    """The videos in `folder` and in its sub-folders, each file once (links resolved), leaving out hidden files and broken/."""
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
        raise FileNotFoundError(f"no videos in or under {args.videos or '(none given)'}; pass --videos DIR (its videos and its sub-folders')")
    if not Path(args.demo_manifest).is_file() and not store_only(only):
        raise FileNotFoundError(f"{args.demo_manifest} not found; run `make demo-data` first")
    results = run_all(videos, args.demo_manifest, args.weights, Path(args.output), only)
    print(table(results))
    log.info("wrote %s", args.output)
    return EXIT_OK
