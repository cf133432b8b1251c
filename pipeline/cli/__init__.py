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

from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_UNEXPECTED, Parser
from pipeline.core.errors import PipelineError

log = logging.getLogger("pipeline")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
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
        log.error(
            "unexpected error in `%s`: %s: %s (at %s). Finished work was kept; rerun with --verbose for the traceback "
            "and report it if it persists",
            args.command,
            type(error).__name__,
            error,
            _where(error),
        )
        return EXIT_UNEXPECTED


def _where(error: BaseException) -> str:
    """file:line where an exception was raised, for the one-line message."""
    frame = error.__traceback__
    while frame and frame.tb_next:
        frame = frame.tb_next
    return f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"


def build_parser() -> argparse.ArgumentParser:
    from pipeline.cli import bench, classify, dataset, nextframe, predict, stage_one

    parser = Parser(
        prog="python -m pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (stage_one, dataset, classify, predict, nextframe, bench):
        group.add_commands(commands)
    return parser
