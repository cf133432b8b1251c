"""`predict`: classify new videos with a trained run."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.cli.common import EXIT_FAILED_VIDEOS, EXIT_OK, add_number, add_runtime
from pipeline.core.errors import InputError
from pipeline.runs.folders import FolderError

log = logging.getLogger("pipeline")


def add_commands(commands) -> None:
    _add_predict(commands)


def _add_predict(commands) -> None:
    from pipeline.extract.config import DECODE_TIMEOUT, DECODE_TIMEOUT_S, WORKERS
    from pipeline.extract.decoder_pool import worker_count

    p = commands.add_parser(
        "predict",
        help="classify new videos with a trained run (decode and embed with its feature config)",
        description="Decode and embed each video with the feature config recorded in RUN, classify it, print the "
        "top-k labels, and write predictions.csv/.json (and per-window tracks with --window).",
    )
    p.add_argument("run", help="run directory written by `python -m pipeline train`")
    p.add_argument("videos", nargs="+", help="video files or folders (searched recursively)")
    p.add_argument(
        "--model", help="which of the run's models (default: the sequence model with the best validation accuracy)"
    )
    p.add_argument("--weights", help="the weights file the run's features came from, if it moved (checked by sha256)")
    p.add_argument("--window", type=float, help="classify sliding windows of this many seconds (long videos)")
    p.add_argument("--stride", type=float, help="seconds between window starts (default: the window length)")
    p.add_argument(
        "--smooth",
        type=int,
        default=3,
        help="windows in the moving average of the smoothed track (default: %(default)s)",
    )
    p.add_argument("--top-k", type=int, default=3, help="labels to report per video (default: %(default)s)")
    p.add_argument("--output", help="folder for the CSV/JSON/PNG outputs (default: RUN/predictions)")
    add_number(
        p, "--workers", WORKERS, default=worker_count(), help="decoder processes (default: one per core, %(default)s)"
    )
    add_number(
        p,
        "--timeout",
        DECODE_TIMEOUT,
        default=DECODE_TIMEOUT_S,
        help="seconds one video (one window) may take to decode before it fails as 'timeout' (default: %(default)s)",
    )
    add_runtime(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from pipeline.core.device import log_tensorflow_device
    from pipeline.predict.outputs import partial_results, prepare_output, write_outputs
    from pipeline.predict.run import load_run
    from pipeline.predict.videos import predict_videos

    if args.window is not None and (args.window <= 0 or (args.stride is not None and args.stride <= 0)):
        raise InputError("--window and --stride take a number of seconds > 0")
    for option, value in (("--top-k", args.top_k), ("--smooth", args.smooth)):
        if value < 1:
            raise InputError(f"{option} {value}: give a whole number of at least 1")
    run = load_run(args.run, args.model, args.weights)
    log_tensorflow_device()
    output = prepare_output(args.output or _default_output(Path(args.run)))
    log.info(
        "run %s: model %s, features %s",
        args.run,
        run.model_name,
        ", ".join(
            f"{k}={run.feature_config[k]}"
            for k in ("backbone", "weights", "image_size", "sampling", "pooling")
            if k in run.feature_config
        ),
    )
    with partial_results(output) as keep:

        def finished(row: dict) -> None:  # kept, then printed, as soon as it is known: Ctrl-C loses no shown video
            keep(row)
            print(_result_line(row, args.top_k), flush=True)

        predictions = predict_videos(
            run,
            args.videos,
            window=args.window,
            stride=args.stride,
            top_k=args.top_k,
            smooth=args.smooth,
            progress=not args.no_progress,
            workers=args.workers,
            timeout=args.timeout,
            runtime=args.runtime,
            on_video=finished,
        )
        written = write_outputs(predictions, output, run.labels)
    log.info(
        "%d videos: %d classified, %d failed; wrote %s",
        len(predictions.videos),
        len(predictions.videos) - predictions.failed,
        predictions.failed,
        ", ".join(str(p) for p in written[:3]),
    )
    return EXIT_FAILED_VIDEOS if predictions.failed else EXIT_OK


def _default_output(run: Path) -> Path:
    """RUN/predictions, where RUN is a real folder: outputs are never written through a link."""
    if run.is_symlink():
        raise FolderError(
            f"{run} is a symbolic link (to {os.readlink(run)}): not writing predictions through it; pass --output, "
            f"or give the run as {run.resolve()}"
        )
    return run / "predictions"


def _result_line(row: dict, top_k: int) -> str:
    """A video's line on stdout: its path, then its top-k labels and probabilities, or why it failed."""
    ranked = [
        f"{_one_field(row[f'label_{k}'])} {row[f'probability_{k}']:.3f}"
        for k in range(1, top_k + 1)
        if isinstance(row.get(f"label_{k}"), str)
    ]
    shown = ", ".join(ranked) if row["status"] == "ok" else row["status"] + ": " + _one_field(row["error"])
    return f"{_one_field(row['video'])}\t{shown}"


def _one_field(text: str) -> str:
    """`text` on one line without tabs (backslash, newline, carriage return, tab written as in Python: `\\n`),
    so that each stdout line stays one video and its tab-separated fields."""
    return text.translate({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
