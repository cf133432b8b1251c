"""`video-pipeline` and `python -m pipeline`: the command line, with a Ctrl-C that always ends it quickly.

The first Ctrl-C raises KeyboardInterrupt as usual: the command drops its queued work, keeps what
is finished and exits 130. A second Ctrl-C, for when that cleanup is too slow for the user, leaves
at once; shards already written stay in the store's parts folder and the next run merges them.
"""

import gc
import os
import signal
import sys

from pipeline.cli import main
from pipeline.cli.common import EXIT_INTERRUPTED


def run() -> None:
    """The `python -m pipeline` and `video-pipeline` entry point."""
    stop_on_second_interrupt()
    status = main()
    gc.freeze()  # the interpreter's last collections would walk TensorFlow's objects again: seconds on a loaded machine
    sys.exit(status)


def stop_on_second_interrupt() -> None:
    """Make Ctrl-C raise KeyboardInterrupt once, and end the process at once the second time.

    Left alone when Ctrl-C is not Python's default (a parent that made us ignore it, e.g. `cmd &`).
    """
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _first_interrupt)


def _first_interrupt(signum, frame):
    signal.signal(signal.SIGINT, _second_interrupt)
    raise KeyboardInterrupt


def _second_interrupt(signum, frame):
    sys.stderr.write("second Ctrl-C: stopping now without cleaning up; finished shards are merged by the next run\n")
    os._exit(EXIT_INTERRUPTED)


if __name__ == "__main__":
    run()
