"""What every command shares: exit codes, the parser class, and options used by more than one command."""

from __future__ import annotations

import argparse
import inspect

EXIT_OK, EXIT_FAILED_VIDEOS, EXIT_BAD_INPUT, EXIT_UNEXPECTED, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class Parser(argparse.ArgumentParser):
    """argparse without prefix matching: `--run` must not quietly mean `--runtime`, nor a typo another option.

    Subcommand parsers are made of the same class, so the rule holds for every command.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})


def bounded(bound):
    """An argparse `type` for a number in `bound` (a `pipeline.core.config.Bound`): a value outside it is refused
    before any work, naming the option and the valid range (exit 2), as the config dataclasses refuse it."""

    def parse(text: str):
        shown = text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"
        try:
            value = bound.kind(text)
        except (ValueError, OverflowError):  # also an integer of more digits than Python converts
            raise argparse.ArgumentTypeError(f"{shown!r} is not {bound.describe()}") from None
        problem = bound.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"{shown} {problem}: give {bound.describe()}")
        return value

    parse.__name__ = bound.kind.__name__  # argparse names the type in some messages
    parse.bound = bound  # what tests and --help read
    return parse


def add_number(p, flag: str, bound, help: str, **options) -> None:
    """`p.add_argument(flag, ...)` for a number in `bound`; its help ends with the valid range."""
    p.add_argument(flag, type=bounded(bound), help=f"{help}; {bound.describe()}", **options)


def add_runtime(p) -> None:
    from pipeline.extract.runtimes import RUNTIMES

    p.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="auto",
        help="where the CNN runs: auto = TensorFlow on a GPU, else the fastest installed CPU runtime "
        "(OpenVINO, then ONNX "
        "Runtime), else TensorFlow; same features either way (default: %(default)s)",
    )


def defaults_of(function) -> dict:
    """The keyword defaults of `function`: the command line's defaults are the Python API's."""
    return {name: p.default for name, p in inspect.signature(function).parameters.items() if p.default is not p.empty}
