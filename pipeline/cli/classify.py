"""Stage two's commands: `train` (classifiers on a store) and `report` (a run's pages and the runs index)."""

from __future__ import annotations

import logging

from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_OK, EXIT_UNEXPECTED
from pipeline.core.errors import error_line

log = logging.getLogger("pipeline")


def add_commands(commands) -> None:
    _add_train(commands)
    _add_report(commands)


def _add_train(commands) -> None:
    from pipeline.classify.config import DATA_MODES, TrainConfig
    from pipeline.classify.sequences import POLICIES
    from pipeline.runs.layout import ALL_MODELS

    defaults = TrainConfig()
    network = defaults.network
    p = commands.add_parser(
        "train",
        help="stage two: train LSTM / GRU classifiers and order-blind baselines on a feature store",
        description="Train on a feature store's videos, evaluate every model on the same test split and write "
        "the run directory (model/ and the report). Prints the report path on stdout.",
    )
    p.add_argument("--store", required=True, help="feature store (.h5) written by `python -m pipeline features`")
    p.add_argument(
        "--model",
        default="gru",
        help=f"comma-separated models from {', '.join(ALL_MODELS)}, or all (default: %(default)s)",
    )
    p.add_argument("--run", help="run directory (default: reports/<dataset>-<model>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument(
        "--seq-len", type=int, help="steps T per video (default: the median number of stored frames per video)"
    )
    p.add_argument(
        "--policy",
        choices=POLICIES,
        default=defaults.policy,
        help="pad: short videos padded and masked, long ones thinned; resample: T evenly spaced frames "
        "(default: %(default)s)",
    )
    p.add_argument("--units", type=int, default=network.units, help="recurrent units per layer (default: %(default)s)")
    p.add_argument("--layers", type=int, default=network.layers, help="stacked recurrent layers (default: %(default)s)")
    p.add_argument("--bidirectional", action="store_true", help="bidirectional recurrent layers")
    p.add_argument(
        "--dropout",
        type=float,
        default=network.dropout,
        help="dropout on inputs and recurrent outputs (default: %(default)s)",
    )
    p.add_argument(
        "--no-masking", action="store_true", help="feed padded steps to the recurrent layers instead of skipping them"
    )
    p.add_argument(
        "--inputs",
        default=",".join(network.inputs),
        help="what each step shows the sequence models: features, deltas (difference from the previous frame's "
        "features) or features,deltas; recorded in the run, baselines always see features (default: %(default)s)",
    )
    p.add_argument(
        "--cell-units",
        type=int,
        default=network.cell_units,
        help="units of one Dense (ReLU) shared by every grid cell of the store's pooling (grid2: 4 cells, grid3: 9; "
        "avg: one cell, a bottleneck), applied to each cell's inputs before the recurrent layer; at most a cell's "
        "input width; recorded in the run; 0: off (default: %(default)s)",
    )
    p.add_argument(
        "--epochs",
        type=int,
        default=defaults.epochs,
        help="most epochs; early stopping usually ends sooner (default: %(default)s)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=defaults.patience,
        help="epochs without a better validation loss before stopping (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size", type=int, default=defaults.batch_size, help="videos per batch (default: %(default)s)"
    )
    p.add_argument(
        "--learning-rate", type=float, default=defaults.learning_rate, help="Adam learning rate (default: %(default)s)"
    )
    p.add_argument(
        "--lr-patience",
        type=int,
        default=defaults.lr_patience,
        help="epochs without a better validation loss before the learning rate drops to 0.3x; 0 keeps it "
        "constant (default: %(default)s)",
    )
    p.add_argument(
        "--class-weights",
        action="store_true",
        help="weight classes inversely to their training frequency (imbalanced data)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=defaults.seed,
        help="seed of splits, initial weights and shuffling (default: %(default)s)",
    )
    p.add_argument(
        "--test-size",
        type=float,
        default=defaults.test_size,
        help="test share when the manifest has no split column (default: %(default)s)",
    )
    p.add_argument(
        "--val-size",
        type=float,
        default=defaults.val_size,
        help="share of train held out for validation when the manifest names no val (default: %(default)s)",
    )
    p.add_argument(
        "--data",
        choices=DATA_MODES,
        default=defaults.data,
        help="memory: hold the sequences in RAM; stream: read batches from the HDF5 store; auto: memory when "
        "they fit (default: %(default)s)",
    )
    p.add_argument(
        "--init",
        help="a sequence model to fine-tune (a run's model/<name>.keras); needs the same feature dimension and classes",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args) -> int:
    from pipeline.classify.config import TrainConfig, parse_models
    from pipeline.classify.models import SequenceModelConfig, parse_inputs
    from pipeline.classify.train import default_run_dir, train

    models = parse_models(args.model)
    network = SequenceModelConfig(
        args.units,
        args.layers,
        args.bidirectional,
        args.dropout,
        not args.no_masking,
        parse_inputs(args.inputs),
        args.cell_units,
    )
    config = TrainConfig(
        models,
        args.seq_len,
        args.policy,
        network,
        args.epochs,
        args.batch_size,
        args.learning_rate,
        args.patience,
        args.class_weights,
        args.seed,
        args.test_size,
        args.val_size,
        args.data,
        args.init or "",
        lr_patience=args.lr_patience,
    )
    result = train(
        args.store,
        args.run or default_run_dir(args.store, models),
        config,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(result.report)
    return EXIT_OK


def _add_report(commands) -> None:
    p = commands.add_parser(
        "report",
        help="(re)write training runs' reports and the index of all runs",
        description="Write index.html and report.md of each run (confusion matrices, curves, baselines) and "
        "update the runs index beside them. Prints each report's path. A run that cannot be reported "
        "is skipped with a warning naming its file, and the command exits 2 after the others.",
    )
    p.add_argument("runs", nargs="*", help="run directories (default: every training run under --reports)")
    p.add_argument("--reports", default="reports", help="folder of the runs (default: %(default)s)")
    p.set_defaults(func=_cmd_report)


def _cmd_report(args) -> int:
    from pipeline.report.classification import write_classification_report
    from pipeline.report.index import training_runs

    runs = args.runs or training_runs(args.reports)
    if not runs:
        raise FileNotFoundError(f"no training runs under {args.reports}; train one with `python -m pipeline train`")
    refused = failed = 0
    for run in runs:
        try:
            print(write_classification_report(run), flush=True)
        except (ValueError, OSError) as error:  # a run someone sent may be broken: the others are still reported
            refused += 1
            log.warning("not reporting %s: %s", run, error)
        except Exception as error:  # a bug: named, and the other runs are still reported
            failed += 1
            log.debug("traceback:", exc_info=True)
            log.error(
                "unexpected error reporting %s: %s (rerun with --verbose for the traceback)", run, error_line(error)
            )
    if refused or failed:
        log.error("%d of %d runs could not be reported (see the messages above)", refused + failed, len(runs))
    return EXIT_UNEXPECTED if failed else EXIT_BAD_INPUT if refused else EXIT_OK
