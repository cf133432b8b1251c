"""`convlstm`: the next-frame ConvLSTM on Moving MNIST."""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.cli.common import EXIT_OK, add_number

log = logging.getLogger("pipeline")


def add_commands(commands) -> None:
    _add_convlstm(commands)


def _add_convlstm(commands) -> None:
    from pipeline.nextframe.config import PRESETS, ConvLSTMConfig

    defaults = PRESETS["cpu"]
    p = commands.add_parser(
        "convlstm",
        help="ConvLSTM forecast of Moving MNIST (10 -> 10), scored against blank, copy-last and mean-frame baselines",
        description="Read or generate Moving MNIST (20, N, 64, 64), train the Keras-example ConvLSTM stack to forecast "
        "frames 10..19 from frames 0..9 (its own predictions fed back), score it on held-out sequences "
        "(one step and the 10-frame rollout, per horizon) against copying the last frame, a blank frame and "
        "the mean of the context frames, with the papers' metrics beside, and write the run directory with "
        "its report. Prints the report path on stdout. Options given beside --preset override it.",
    )
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="cpu",
        help="cpu: the defaults shown, minutes on a 2-core CPU; paper: 64x64 frames, 10,000 training sequences, "
        "64 filters, batch 16, 20 epochs (a GPU job) (default: %(default)s)",
    )
    p.add_argument(
        "--data",
        help="mnist_test_seq.npy; MNIST digits to generate from (idx images file, .gz or not, a folder of them, or "
        f"Keras mnist.npz); or sklearn: its bundled 8x8 digits, upscaled (default: {defaults.data})",
    )
    options = (  # flag, help; the default comes from the preset, the range from ConvLSTMConfig.BOUNDS
        ("--sequences", "sequences generated, or read from the .npy"),
        ("--seed", "seed of generation, initial weights and shuffling"),
        ("--frame-size", "model frame size in pixels, a divisor of 64"),
        ("--filters", "filters per ConvLSTM2D layer"),
        ("--epochs", "most epochs; early stopping may end sooner"),
        ("--patience", "epochs without a better validation loss before stopping"),
        ("--lr-patience", "epochs without a better validation loss before the learning rate drops tenfold"),
        ("--batch-size", "sequences per batch"),
        ("--learning-rate", "Adam learning rate"),
        ("--examples", "held-out sequences drawn as PNG strips and GIFs"),
        (
            "--time-budget",
            "minutes for the whole command: after timing the first epoch, training stops when the next epoch would "
            "not leave time for the evaluation and report (--epochs stays the most); recorded in the report; 0: none",
        ),
    )
    for flag, text in options:
        name = flag[2:].replace("-", "_")
        add_number(p, flag, ConvLSTMConfig.BOUNDS[name], help=f"{text} (cpu preset: {getattr(defaults, name)})")
    p.add_argument("--run", help="run directory (default: reports/convlstm-<data name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.set_defaults(func=_cmd_convlstm)


def _cmd_convlstm(args) -> int:
    from pipeline.nextframe.config import preset
    from pipeline.nextframe.run import default_run_dir, run_convlstm

    config = preset(
        args.preset,
        data=args.data,
        sequences=args.sequences,
        seed=args.seed,
        frame_size=args.frame_size,
        filters=args.filters,
        batch_size=args.batch_size,
        epochs=args.epochs,
        patience=args.patience,
        lr_patience=args.lr_patience,
        learning_rate=args.learning_rate,
        examples=args.examples,
        time_budget=args.time_budget,
    )
    run_dir = Path(args.run) if args.run else default_run_dir(config)
    run_convlstm(config, run_dir, overwrite=args.overwrite)
    print(run_dir / "index.html")
    return EXIT_OK
