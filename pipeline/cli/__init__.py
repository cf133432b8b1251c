"""Command line: `python -m pipeline COMMAND ...`, a thin layer over the package's functions.

Exit status: 0 success; 1 the job ran but some videos failed (the rest are stored; see the
failure table); 2 bad input or options, or an unusable store (named, with what to do); 3 an
unexpected error (one line; the traceback with --verbose); 130 interrupted (finished work kept).
Logs and progress go to stderr; machine-readable results (paths, CSV, JSON) to stdout or files.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from pipeline.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED_VIDEOS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    Parser,
    add_runtime,
)
from pipeline.core.errors import InputError, PipelineError

log = logging.getLogger("pipeline")



def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        return args.func(args)
    except (PipelineError, FileNotFoundError) as error:  # the user's input, options, files or environment
        log.error("%s", error)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        log.error("interrupted; finished work was kept")
        return EXIT_INTERRUPTED
    except Exception as error:  # a bug or an environment problem: one line, the traceback on request
        log.debug("traceback:", exc_info=True)
        log.error("unexpected error in `%s`: %s: %s (at %s). Finished work was kept; rerun with --verbose for the traceback "
                  "and report it if it persists", args.command, type(error).__name__, error, _where(error))
        return EXIT_UNEXPECTED


def _where(error: BaseException) -> str:
    """file:line where an exception was raised, for the one-line message."""
    frame = error.__traceback__
    while frame and frame.tb_next:
        frame = frame.tb_next
    return f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"


def build_parser() -> argparse.ArgumentParser:
    from pipeline.cli import stage_one as cli_stage_one  # it imports this module

    parser = Parser(prog="python -m pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    cli_stage_one.add_commands(commands)  # features, inspect, compact, manifest, demo-data, bench
    _add_temporal_bench(commands)
    _add_predict(commands)
    _add_train(commands)
    _add_report(commands)
    _add_convlstm(commands)
    return parser


# --- temporal-bench --------------------------------------------------------------------------


def _add_temporal_bench(commands) -> None:
    from pipeline.bench.temporal import TASKS, BenchConfig

    defaults = BenchConfig()
    p = commands.add_parser("temporal-bench", help="benchmark the sequence models on temporal tasks (direction of motion, arrow of time)",
                            description="Build the temporal tasks (synthetic motion, small objects over clutter, arrow of time on the "
                                        "real videos of the shared data) into OUTPUT, extract features, train every model and write "
                                        "results.csv/.json/.md. Prints the Markdown table on stdout.")
    p.add_argument("--output", default=defaults.output, help="folder of the clips, stores, runs and results (default: %(default)s)")
    p.add_argument("--shared-data", default=os.environ.get("SHARED_DATA", ""),
                   help="folder holding videos/ and weights/ for the arrow task (default: $SHARED_DATA)")
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated tasks from %(default)s")
    p.add_argument("--motion-clips", type=int, default=defaults.motion_clips, help="clips of the motion task (default: %(default)s)")
    p.add_argument("--clutter-clips", type=int, default=defaults.clutter_clips, help="clips of the clutter task (default: %(default)s)")
    p.add_argument("--windows-per-video", type=int, default=defaults.windows_per_video, help="most windows cut from one real video (default: %(default)s)")
    p.add_argument("--pooling", choices=("avg", "grid2", "grid3"), default=defaults.pooling, help="features' pooling, synthetic tasks (default: %(default)s)")
    p.add_argument("--real-pooling", choices=("avg", "grid2", "grid3"), default=defaults.real_pooling, help="features' pooling, arrow task (default: %(default)s)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the clips, splits and training (default: %(default)s)")
    p.add_argument("--inputs", help="features, deltas or features,deltas (default: deltas, measured best here)")
    p.add_argument("--units", type=int, help="recurrent units (default: 128, measured best here)")
    p.add_argument("--cell-units", type=int, help="units of the Dense shared by the grid cells, 0 off (default: 32, measured best here)")
    p.add_argument("--bidirectional", action="store_true", default=None, help="train override: bidirectional recurrent layers")
    p.add_argument("--lr-patience", type=int, help="train override: epochs before the learning rate drops, 0 constant (default: train's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_temporal_bench)


def _cmd_temporal_bench(args) -> int:
    from dataclasses import replace

    from pipeline.bench.temporal import BenchConfig, markdown_table, measured_training, run_benchmark
    from pipeline.classify.models import parse_inputs

    network = {key: value for key, value in (("inputs", args.inputs and parse_inputs(args.inputs)), ("units", args.units),
                                             ("cell_units", args.cell_units), ("bidirectional", args.bidirectional)) if value is not None}
    train = measured_training()
    train["network"] = replace(train["network"], **network)
    if args.lr_patience is not None:
        train["lr_patience"] = args.lr_patience
    config = BenchConfig(args.output, args.shared_data, tuple(t.strip() for t in args.tasks.split(",") if t.strip()), args.motion_clips,
                         args.clutter_clips, args.windows_per_video, pooling=args.pooling, real_pooling=args.real_pooling, seed=args.seed, train=train)
    print(markdown_table(run_benchmark(config, progress=not args.no_progress)))
    log.info("wrote %s", Path(args.output) / "results.md")
    return EXIT_OK


# --- train -----------------------------------------------------------------------------------


def _add_train(commands) -> None:
    from pipeline.classify.config import DATA_MODES, TrainConfig
    from pipeline.classify.sequences import POLICIES
    from pipeline.runs.layout import ALL_MODELS

    defaults = TrainConfig()
    network = defaults.network
    p = commands.add_parser("train", help="stage two: train LSTM / GRU classifiers and order-blind baselines on a feature store",
                            description="Train on a feature store's videos, evaluate every model on the same test split and write "
                                        "the run directory (model/ and the report). Prints the report path on stdout.")
    p.add_argument("--store", required=True, help="feature store (.h5) written by `python -m pipeline features`")
    p.add_argument("--model", default="gru", help=f"comma-separated models from {', '.join(ALL_MODELS)}, or all (default: %(default)s)")
    p.add_argument("--run", help="run directory (default: reports/<dataset>-<model>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--seq-len", type=int, help="steps T per video (default: the median number of stored frames per video)")
    p.add_argument("--policy", choices=POLICIES, default=defaults.policy,
                   help="pad: short videos padded and masked, long ones thinned; resample: T evenly spaced frames (default: %(default)s)")
    p.add_argument("--units", type=int, default=network.units, help="recurrent units per layer (default: %(default)s)")
    p.add_argument("--layers", type=int, default=network.layers, help="stacked recurrent layers (default: %(default)s)")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional recurrent layers")
    p.add_argument("--dropout", type=float, default=network.dropout, help="dropout on inputs and recurrent outputs (default: %(default)s)")
    p.add_argument("--no-masking", action="store_true", help="feed padded steps to the recurrent layers instead of skipping them")
    p.add_argument("--inputs", default=",".join(network.inputs),
                   help="what each step shows the sequence models: features, deltas (difference from the previous frame's "
                        "features) or features,deltas; recorded in the run, baselines always see features (default: %(default)s)")
    p.add_argument("--cell-units", type=int, default=network.cell_units,
                   help="units of one Dense (ReLU) shared by every grid cell of the store's pooling (grid2: 4 cells, grid3: 9; "
                        "avg: one cell, a bottleneck), applied to each cell's inputs before the recurrent layer; at most a cell's "
                        "input width; recorded in the run; 0: off (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=defaults.epochs, help="most epochs; early stopping usually ends sooner (default: %(default)s)")
    p.add_argument("--patience", type=int, default=defaults.patience, help="epochs without a better validation loss before stopping (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=defaults.batch_size, help="videos per batch (default: %(default)s)")
    p.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--lr-patience", type=int, default=defaults.lr_patience,
                   help="epochs without a better validation loss before the learning rate drops to 0.3x; 0 keeps it constant (default: %(default)s)")
    p.add_argument("--class-weights", action="store_true", help="weight classes inversely to their training frequency (imbalanced data)")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of splits, initial weights and shuffling (default: %(default)s)")
    p.add_argument("--test-size", type=float, default=defaults.test_size, help="test share when the manifest has no split column (default: %(default)s)")
    p.add_argument("--val-size", type=float, default=defaults.val_size, help="share of train held out for validation when the manifest names no val (default: %(default)s)")
    p.add_argument("--data", choices=DATA_MODES, default=defaults.data,
                   help="memory: hold the sequences in RAM; stream: read batches from the HDF5 store; auto: memory when they fit (default: %(default)s)")
    p.add_argument("--init", help="a sequence model to fine-tune (a run's model/<name>.keras); needs the same feature dimension and classes")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from pipeline.classify.config import TrainConfig, parse_models
    from pipeline.classify.models import SequenceModelConfig, parse_inputs
    from pipeline.classify.train import default_run_dir, train

    models = parse_models(args.model)
    network = SequenceModelConfig(args.units, args.layers, args.bidirectional, args.dropout, not args.no_masking, parse_inputs(args.inputs),
                                  args.cell_units)
    config = TrainConfig(models, args.seq_len, args.policy, network, args.epochs, args.batch_size, args.learning_rate, args.patience,
                         args.class_weights, args.seed, args.test_size, args.val_size, args.data, args.init or "", lr_patience=args.lr_patience)
    result = train(args.store, args.run or default_run_dir(args.store, models), config, overwrite=args.overwrite, progress=not args.no_progress)
    print(result.report)
    return EXIT_OK


# --- report ----------------------------------------------------------------------------------


def _add_report(commands) -> None:
    p = commands.add_parser("report", help="(re)write training runs' reports and the index of all runs",
                            description="Write index.html and report.md of each run (confusion matrices, curves, baselines) and "
                                        "update the runs index beside them. Prints each report's path. A run that cannot be reported "
                                        "is skipped with a warning naming its file, and the command exits 2 after the others.")
    p.add_argument("runs", nargs="*", help="run directories (default: every training run under --reports)")
    p.add_argument("--reports", default="reports", help="folder of the runs (default: %(default)s)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from pipeline.report.classification import write_classification_report
    from pipeline.report.index import training_runs

    runs = args.runs or training_runs(args.reports)
    if not runs:
        raise FileNotFoundError(f"no training runs under {args.reports}; train one with `python -m pipeline train`")
    refused = 0
    for run in runs:
        try:
            print(write_classification_report(run))
        except (ValueError, OSError) as error:  # a run someone sent may be broken: the others are still reported
            refused += 1
            log.warning("not reporting %s: %s", run, error)
    if refused:
        log.error("%d of %d runs could not be reported (see the warnings above)", refused, len(runs))
    return EXIT_BAD_INPUT if refused else EXIT_OK


# --- convlstm --------------------------------------------------------------------------------


def _add_convlstm(commands) -> None:
    from pipeline.nextframe.config import PRESETS

    defaults = PRESETS["cpu"]
    p = commands.add_parser("convlstm", help="ConvLSTM forecast of Moving MNIST (10 -> 10), scored against blank, copy-last and mean-frame baselines",
                            description="Read or generate Moving MNIST (20, N, 64, 64), train the Keras-example ConvLSTM stack to forecast "
                                        "frames 10..19 from frames 0..9 (its own predictions fed back), score it on held-out sequences "
                                        "(one step and the 10-frame rollout, per horizon) against copying the last frame, a blank frame and "
                                        "the mean of the context frames, with the papers' metrics beside, and write the run directory with "
                                        "its report. Prints the report path on stdout. Options given beside --preset override it.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu",
                   help="cpu: the defaults shown, minutes on a 2-core CPU; paper: 64x64 frames, 10,000 training sequences, "
                        "64 filters, batch 16, 20 epochs (a GPU job) (default: %(default)s)")
    p.add_argument("--data", help="mnist_test_seq.npy; MNIST digits to generate from (idx images file, .gz or not, a folder of them, or "
                                  f"Keras mnist.npz); or sklearn: its bundled 8x8 digits, upscaled (default: {defaults.data})")
    options = (  # flag, type, help; the default comes from the preset
        ("--sequences", int, "sequences generated, or read from the .npy"),
        ("--seed", int, "seed of generation, initial weights and shuffling"),
        ("--frame-size", int, "model frame size in pixels, a divisor of 64"),
        ("--filters", int, "filters per ConvLSTM2D layer"),
        ("--epochs", int, "most epochs; early stopping may end sooner"),
        ("--patience", int, "epochs without a better validation loss before stopping"),
        ("--lr-patience", int, "epochs without a better validation loss before the learning rate drops tenfold"),
        ("--batch-size", int, "sequences per batch"),
        ("--learning-rate", float, "Adam learning rate"),
        ("--examples", int, "held-out sequences drawn as PNG strips and GIFs"),
    )
    for flag, kind, text in options:
        p.add_argument(flag, type=kind, help=f"{text} (cpu preset: {getattr(defaults, flag[2:].replace('-', '_'))})")
    p.add_argument("--run", help="run directory (default: reports/convlstm-<data name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.set_defaults(func=_cmd_convlstm)


def _cmd_convlstm(args) -> int:
    from pipeline.nextframe.config import preset
    from pipeline.nextframe.run import default_run_dir, run_convlstm

    config = preset(args.preset, data=args.data, sequences=args.sequences, seed=args.seed, frame_size=args.frame_size, filters=args.filters,
                    batch_size=args.batch_size, epochs=args.epochs, patience=args.patience, lr_patience=args.lr_patience,
                    learning_rate=args.learning_rate, examples=args.examples)
    run_dir = Path(args.run) if args.run else default_run_dir(config)
    run_convlstm(config, run_dir, overwrite=args.overwrite)
    print(run_dir / "index.html")
    return EXIT_OK


# --- predict ---------------------------------------------------------------------------------


def _add_predict(commands) -> None:
    from pipeline.extract.decoder_pool import worker_count

    p = commands.add_parser("predict", help="classify new videos with a trained run (decode and embed with its feature config)",
                            description="Decode and embed each video with the feature config recorded in RUN, classify it, print the "
                                        "top-k labels, and write predictions.csv/.json (and per-window tracks with --window).")
    p.add_argument("run", help="run directory written by `python -m pipeline train`")
    p.add_argument("videos", nargs="+", help="video files or folders (searched recursively)")
    p.add_argument("--model", help="which of the run's models (default: the sequence model with the best validation accuracy)")
    p.add_argument("--weights", help="the weights file the run's features came from, if it moved (checked by sha256)")
    p.add_argument("--window", type=float, help="classify sliding windows of this many seconds (long videos)")
    p.add_argument("--stride", type=float, help="seconds between window starts (default: the window length)")
    p.add_argument("--smooth", type=int, default=3, help="windows in the moving average of the smoothed track (default: %(default)s)")
    p.add_argument("--top-k", type=int, default=3, help="labels to report per video (default: %(default)s)")
    p.add_argument("--output", help="folder for the CSV/JSON/PNG outputs (default: RUN/predictions)")
    p.add_argument("--workers", type=int, default=worker_count(), help="decoder processes (default: one per core, %(default)s)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds one video (one window) may take to decode before it fails as 'timeout' (default: %(default)s)")
    add_runtime(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(args) -> int:
    from pipeline.predict import load_run, predict_videos, prepare_output, write_outputs

    if args.window is not None and (args.window <= 0 or (args.stride is not None and args.stride <= 0)):
        raise InputError("--window and --stride take a number of seconds > 0")
    run = load_run(args.run, args.model, args.weights)
    output = prepare_output(args.output or Path(args.run) / "predictions")
    log.info("run %s: model %s, features %s", args.run, run.model_name,
             ", ".join(f"{k}={run.feature_config[k]}" for k in ("backbone", "weights", "image_size", "sampling", "pooling") if k in run.feature_config))
    predictions = predict_videos(run, args.videos, window=args.window, stride=args.stride, top_k=args.top_k, smooth=args.smooth,
                                 progress=not args.no_progress, workers=args.workers, timeout=args.timeout,
                                 runtime=args.runtime)
    for row in predictions.videos.to_dict("records"):
        ranked = [f"{_one_field(row[f'label_{k}'])} {row[f'probability_{k}']:.3f}" for k in range(1, args.top_k + 1)
                  if isinstance(row.get(f"label_{k}"), str)]
        print(f"{_one_field(row['video'])}\t{', '.join(ranked) if row['status'] == 'ok' else row['status'] + ': ' + _one_field(row['error'])}")
    written = write_outputs(predictions, output, run.labels)
    log.info("%d videos: %d classified, %d failed; wrote %s", len(predictions.videos), len(predictions.videos) - predictions.failed,
             predictions.failed, ", ".join(str(p) for p in written[:3]))
    return EXIT_FAILED_VIDEOS if predictions.failed else EXIT_OK


def _one_field(text: str) -> str:
    """`text` on one line without tabs (backslash, newline, carriage return, tab written as in Python: `\\n`),
    so that each stdout line stays one video and its tab-separated fields."""
    return text.translate({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
