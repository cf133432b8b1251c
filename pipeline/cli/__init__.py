"""Command line: `video-pipeline COMMAND ...` (or `python -m pipeline COMMAND ...`), a thin layer over the package.

Exit status: 0 success (`features`: at most --max-failures of the videos failed, default 10%);
1 the job ran but (more) videos failed (the rest are stored; see the failure table); 2 bad input
or options, or an unusable store (named, with what to do); 3 an unexpected error (one line; the
traceback with --verbose); 130 interrupted (finished work kept).
Logs and progress go to stderr; machine-readable results (paths, CSV, JSON) to stdout or files.
-v (debug logging, and the libraries' own log lines) or -q (warnings and errors only, no progress
bars) go before or after COMMAND.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from pathlib import Path

from pipeline.cli import quiet
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_UNEXPECTED, Parser
from pipeline.core.errors import PipelineError, error_line

log = logging.getLogger("pipeline")

# errors of the user's machine, not of the tool: exit 2 naming the path, with what to do
DENIED = {errno.EACCES, errno.EPERM, errno.EROFS}
FULL = {errno.ENOSPC, errno.EDQUOT}
BUSY = {errno.EBUSY}  # e.g. a run folder that is a mount point: it cannot be replaced
WHERE_TO = {  # the option that puts a command's output elsewhere, and the arguments naming where it went
    "features": ("--out-dir or --store", ("store", "out_dir")),
    "compact": ("a copy of the store in a writable folder", ("store",)),
    "train": ("--run", ("run",)),
    "report": ("--reports, or copies of the runs in a writable folder", ("runs", "reports")),
    "predict": ("--output", ("output", "run")),
    "convlstm": ("--run", ("run",)),
    "bench": ("--output", ("output",)),
    "temporal-bench": ("--output", ("output",)),
    "demo-data": ("--output and --manifest", ("output",)),
    "manifest": ("--output", ("output",)),
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; `argv` None means this process's command line, whose stderr the command then owns.

    Only then are the libraries' native log lines filtered (`quiet`): a caller that passes `argv`
    (a test, a notebook) keeps its own stderr untouched.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose and args.quiet:
        parser.error("-v (more output) and -q (less) contradict each other: give one of them")
    if argv is None:
        quiet.install(args.verbose)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    if args.quiet and hasattr(args, "no_progress"):
        args.no_progress = True
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
        cause = _environment_error(error)
        if cause is not None:
            log.error("%s", _environment_message(args, cause))
            return EXIT_BAD_INPUT
        log.error(
            "unexpected error in `%s`: %s: %s (at %s). Finished work was kept; rerun with --verbose for the traceback "
            "and report it if it persists",
            args.command,
            type(error).__name__,
            error,
            _where(error),
        )
        return EXIT_UNEXPECTED


def _environment_error(error: BaseException) -> OSError | None:
    """The OSError of the user's environment behind `error` (its cause or context too): no permission, a
    read-only file system, a full disk or quota, a busy mount point; None when there is none."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DENIED | FULL | BUSY:
            return error
        error = error.__cause__ or error.__context__
    return None


def _environment_message(args, error: OSError) -> str:
    """One line naming the path (the error's, else where the command writes), the cause and what to do."""
    option, dests = WHERE_TO.get(args.command, ("another folder", ()))
    path = error.filename
    if path is None:  # e.g. a write to an open file: the folder the command writes to
        path = next((getattr(args, dest) for dest in dests if getattr(args, dest, None)), "its output folder")
        path = f"writing in {' '.join(map(str, path)) if isinstance(path, list) else path}"
    also = f" and {error.filename2}" if error.filename2 is not None else ""
    what = error.strerror or os.strerror(error.errno)
    if error.filename is None and str(error) not in (what, f"[Errno {error.errno}] {what}"):
        what += f" ({error_line(error, 200, with_type=False)})"  # h5py names its file only in the message
    if error.errno in FULL:
        advice = f"free space there, or write elsewhere ({option}); finished work was kept"
    elif error.errno in BUSY:
        advice = f"a mount point or a folder in use cannot be replaced: write elsewhere ({option})"
    else:
        advice = f"check its permissions and its folder's (a read-only disk?), or write elsewhere ({option})"
    return f"{args.command}: {path}{also}: {what}; {advice}"


def _where(error: BaseException) -> str:
    """file:line where an exception was raised, for the one-line message."""
    frame = error.__traceback__
    while frame and frame.tb_next:
        frame = frame.tb_next
    return f"{frame.tb_frame.f_code.co_filename}:{frame.tb_lineno}" if frame else "?"


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; usage lines name the program as it was started (`program_name`)."""
    from pipeline.cli import bench, classify, dataset, nextframe, predict, stage_one

    parser = Parser(
        prog=prog or program_name(), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_verbosity(parser, default=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (stage_one, dataset, classify, predict, nextframe, bench):
        group.add_commands(commands)
    for command in {id(p): p for p in commands.choices.values()}.values():
        _add_verbosity(command, default=argparse.SUPPRESS)  # absent after COMMAND: the value given before it stays
    return parser


def program_name(argv0: str | None = None) -> str:
    """`python -m pipeline` when started so (argv[0] is the package's __main__.py), else the script's name."""
    path = Path(sys.argv[0] if argv0 is None else argv0)
    if path.name == "__main__.py" and path.parent.name == "pipeline":
        return "python -m pipeline"
    return path.name or "video-pipeline"


def _add_verbosity(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="debug logging, and the libraries' own log lines"
    )
    group.add_argument(
        "-q", "--quiet", action="store_true", default=default, help="only warnings and errors; no progress bars"
    )
