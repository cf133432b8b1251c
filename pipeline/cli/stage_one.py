"""Stage one's commands: `features` (embed a manifest's videos), `inspect` and `compact` (a store)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

from pipeline.cli.common import EXIT_OK, add_number, add_runtime, defaults_of

log = logging.getLogger("pipeline")

FAILURES_NAMED = 10  # failed videos named in the closing lines; all of them are in <store>.failures.csv


def add_commands(commands) -> None:
    _add_features(commands)
    _add_inspect(commands)
    _add_compact(commands)


def _add_features(commands) -> None:
    from pipeline.extract import config as limits
    from pipeline.extract.backbones import PRECISIONS
    from pipeline.extract.config import (
        BATCH_SIZE,
        DECODE_TIMEOUT_S,
        DTYPES,
        FALLBACK,
        LOCK_TIMEOUT_S,
        MAX_FAILURES,
        SCHEDULER_TIMEOUT_S,
        SHARD_SIZE,
        STORES_DIR,
        FeatureConfig,
        parse_max_failures,
    )
    from pipeline.extract.decode import CROPS
    from pipeline.extract.decoder_pool import worker_count
    from pipeline.store.layout import POOLINGS

    config = FeatureConfig()
    p = commands.add_parser(
        "features",
        help="stage one: decode the manifest's videos and store CNN features",
        description="Decode every video of a manifest, embed sampled frames with a frozen CNN and store "
        "them in features/<manifest name>/<manifest name>-<backbone>-<size>px-<sampling>-<hash>.h5. "
        "Reruns extract only what is missing and take "
        "labels, splits and groups from the manifest (rows that left it leave the store). "
        "Prints the store path on stdout.",
    )
    p.add_argument("--manifest", required=True, help="manifest CSV (path,label[,split,group,video_id])")
    p.add_argument("--backbone", default=config.backbone, help="keras.applications model name (default: %(default)s)")
    p.add_argument(
        "--weights",
        default=config.weights,
        help="imagenet, none (random, tests only) or a weights file path (default: %(default)s)",
    )
    add_number(
        p,
        "--image-size",
        limits.IMAGE_SIZE,
        default=config.image_size,
        help="square CNN input size in pixels (default: %(default)s)",
    )
    p.add_argument(
        "--crop",
        choices=CROPS,
        default=config.crop,
        help="center: scale the short side, cut the centre; squash: scale to a square (default: %(default)s)",
    )
    p.add_argument(
        "--sampling", default=config.sampling, help="uniform:K, fps:F, stride:N or all (default: %(default)s)"
    )
    add_number(
        p,
        "--max-frames",
        limits.MAX_FRAMES_BOUND,
        default=config.max_frames,
        help="cap on sampled frames per video, thinned evenly; a video's sampled frames may take "
        f"{limits.DECODED_VIDEO_BYTES // 2**30} GiB at the CNN's size (frames x size x size x 3 bytes) "
        "(default: %(default)s)",
    )
    p.add_argument("--dtype", choices=DTYPES, default=config.dtype, help="stored feature dtype (default: %(default)s)")
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",  # resolved per machine; a FeatureConfig holds the result
        help="CNN arithmetic; auto = bfloat16 for VGG on CPUs that compute it natively, else float32 "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--pooling",
        choices=POOLINGS,
        default=config.pooling,
        help="pool the CNN's last feature map globally (avg) or per cell of a 2x2 / 3x3 grid, which keeps "
        "where things are "
        "(4x / 9x the features; default: %(default)s)",
    )
    add_number(
        p,
        "--batch-size",
        limits.BATCH,
        default=BATCH_SIZE,
        help="frames per CNN batch; refused when its estimated memory exceeds this machine's (default: %(default)s)",
    )
    add_runtime(p)
    add_number(
        p,
        "--workers",
        limits.WORKERS,
        default=worker_count(),
        help="decoder processes, at the lowest CPU priority so they use what the CNN leaves (default: one per "
        "core, %(default)s)",
    )
    p.add_argument(
        "--scheduler",
        help="run on dask: 'local' for a LocalCluster on this machine, or a scheduler address "
        "tcp://HOST:8786 (default: in-process, measured faster on small machines)",
    )
    add_number(
        p,
        "--scheduler-timeout",
        limits.SCHEDULER_TIMEOUT,
        default=SCHEDULER_TIMEOUT_S,
        help="seconds a scheduler address may take to connect and answer before it is refused (default: %(default)s)",
    )
    add_number(
        p,
        "--dask-workers",
        limits.DASK_WORKERS,
        help="worker processes of --scheduler local (default: half the cores)",
    )
    add_number(
        p,
        "--timeout",
        limits.DECODE_TIMEOUT,
        default=DECODE_TIMEOUT_S,
        help="seconds one video may take to decode before it fails as 'timeout' (default: %(default)s)",
    )
    add_number(
        p,
        "--shard-size",
        limits.SHARD,
        default=SHARD_SIZE,
        help="videos per shard file; a killed run loses at most this many (default: %(default)s)",
    )
    p.add_argument("--out-dir", default=STORES_DIR, help="root folder of the stores (default: %(default)s)")
    p.add_argument("--store", help="explicit store path instead of <out-dir>/<manifest name>/<readable name>-<hash>.h5")
    p.add_argument(
        "--skip-missing",
        action="store_true",
        help="record manifest rows whose file is missing as failures (stage 'missing') "
        "instead of refusing the manifest",
    )
    p.add_argument(
        "--retry-failed",
        action="store_true",
        help="retry videos that failed in an earlier run although their file did not change",
    )
    policy = p.add_mutually_exclusive_group()
    policy.add_argument(
        "--max-failures",
        type=parse_max_failures,
        default=MAX_FAILURES,
        metavar="SHARE|COUNT",
        help="failed videos (this run's, known ones not retried, --skip-missing's) a run may have and still exit 0: "
        "a share of the manifest (0.1 or 10%%) or a count (3); more exit 1 (default: 0.1)",
    )
    policy.add_argument("--strict", action="store_true", help="exit 1 when any video failed (--max-failures 0)")
    p.add_argument(
        "--fallback",
        action="store_true",
        help=f"if ImageNet weights are unavailable offline, use random {FALLBACK['backbone']} at "
        f"{FALLBACK['image_size']} px instead (announced and recorded)",
    )
    add_number(
        p,
        "--fallback-size",
        limits.IMAGE_SIZE,
        default=FALLBACK["image_size"],
        help="input size in pixels of the --fallback backbone (default: %(default)s; `make demo` uses 64)",
    )
    add_number(
        p,
        "--lock-timeout",
        limits.LOCK_TIMEOUT,
        default=LOCK_TIMEOUT_S,
        help="seconds to wait for another run's merge into the same store (default: %(default)s)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_features)


def _cmd_features(args) -> int:
    from pipeline.extract import run as extract
    from pipeline.extract.config import FeatureConfig

    config = FeatureConfig(
        backbone=args.backbone,
        image_size=args.image_size,
        crop=args.crop,
        sampling=args.sampling,
        max_frames=args.max_frames,
        dtype=args.dtype,
        precision=args.precision,
        pooling=args.pooling,
    )
    summary = extract.extract_manifest(
        args.manifest,
        config,
        args.weights,
        store_path=args.store,
        out_dir=args.out_dir,
        batch_size=args.batch_size,
        runtime=args.runtime,
        fallback=args.fallback,
        fallback_size=args.fallback_size,
        skip_missing=args.skip_missing,
        workers=args.workers,
        scheduler=args.scheduler,
        scheduler_timeout=args.scheduler_timeout,
        dask_workers=args.dask_workers,
        timeout=args.timeout,
        shard_size=args.shard_size,
        retry_failed=args.retry_failed,
        progress=not args.no_progress,
        lock_timeout=args.lock_timeout,
    )
    if summary.fallback:
        log.warning("this store uses the offline fallback backbone: %s", summary.fallback.split(". Reason:")[0])
    t = summary.timings
    log.info(
        "time: decode %.1fs (in workers; main waited %.1fs), cnn %.1fs, write %.1fs",
        t["decode"],
        t["wait_decode"],
        t["cnn"],
        t["write"],
    )
    summary = replace(summary, max_failures=0 if args.strict else args.max_failures)
    log.info("%s", summary.line())
    if summary.failed_videos:
        named = summary.failed_videos[:FAILURES_NAMED]
        more = len(summary.failed_videos) - len(named)
        log.warning(
            "failed videos: %s%s; all of them, with the reasons, in %s",
            ", ".join(named),
            f" and {more} more" if more else "",
            Path(f"{summary.store_path.with_suffix('')}.failures.csv"),
        )
    (log.error if summary.exit_code else log.info)("%s", summary.policy_line())
    print(summary.store_path)
    return summary.exit_code


def _add_inspect(commands) -> None:
    p = commands.add_parser(
        "inspect", help="print a feature store's config, counts per label and split, frames and failures"
    )
    p.add_argument("store", help="a feature store: the .h5 file, its folder, or the manifest CSV it was made from")
    p.add_argument("--json", action="store_true", help="print the video and failure tables as JSON instead")
    p.set_defaults(func=_cmd_inspect)


def _cmd_inspect(args) -> int:
    from pipeline import store

    args.store = store.find_store(args.store)
    if args.json:
        payload = {
            "attrs": store.read_attrs(args.store),
            "videos": store.read_videos(args.store).to_dict("records"),
            "failures": store.read_failures(args.store).to_dict("records"),
        }
        print(json.dumps(payload, indent=1, default=str))
    else:
        print(store.summary(args.store))
    store.require_segments(args.store)  # after the summary, which lists them: exit 2 naming the missing files
    return EXIT_OK


def _add_compact(commands) -> None:
    from pipeline.extract.config import LOCK_TIMEOUT
    from pipeline.store import compact

    p = commands.add_parser(
        "compact",
        help="reclaim a store's unreferenced frames, migrate an old store, or recover a broken one",
        description="Copy the frames a store's video table references into one segment and delete the rest "
        "(replaced and retired videos); a store of the previous layout is migrated in place "
        "without copying. --recover rebuilds a store whose index is unreadable from its "
        "readable segments; the next `features` run completes it.",
    )
    p.add_argument("store", help="path of an .h5 feature store")
    p.add_argument(
        "--recover",
        action="store_true",
        help="rebuild the index from the readable segments (keeps the broken index as <store>.h5.broken)",
    )
    add_number(
        p,
        "--lock-timeout",
        LOCK_TIMEOUT,
        default=defaults_of(compact)["lock_timeout"],
        help="seconds to wait for a run merging into the store (default: %(default)s)",
    )
    p.set_defaults(func=_cmd_compact)


def _cmd_compact(args) -> int:
    from pipeline import store

    if args.recover:
        result = store.recover(args.store, args.lock_timeout)
        for lost in result["lost_segments"]:
            log.warning("unreadable segment left out: %s", lost)
        log.info(
            "recovered %d videos from %d segments into %s; run `python -m pipeline features` with its manifest to sync "
            "it and re-extract what was lost",
            result["videos"],
            result["segments"],
            args.store,
        )
    else:
        result = store.compact(args.store, args.lock_timeout)
        log.info(
            "compacted %s: %d frame rows in %d segments -> %d in 1",
            args.store,
            result["frames_before"],
            result["segments_before"],
            result["frames_after"],
        )
    print(json.dumps(result))
    return EXIT_OK
