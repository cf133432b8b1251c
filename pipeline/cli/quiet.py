"""Quiet by default: the libraries' own log lines stay off the terminal unless `-v` asks for them.

TensorFlow 2.21 logs through absl before it reads TF_CPP_MIN_LOG_LEVEL (oneDNN's note, `cudart_stub`,
`failed call to cuInit ... (303)` on every CPU machine), decord logs its open errors through dmlc
and FFmpeg through av_log: all of them write to file descriptor 2 from C++, where Python's logging
cannot reach, and each beside the tool's own one-line message for the same event. So a command
started as a program (`install`) points fd 2 at a pipe whose reader drops those lines by their
formats (`NOISE`) and passes every other line on, and gives Python's `sys.stderr` (the tool's log
and its progress bars) the original stream, so they are neither filtered nor delayed. Processes the
command starts (decoders, the forkserver) inherit fd 2 and so the filter. A fatal C++ line (absl's
`F...`) and anything of an unknown format still shows. Python-side chatter of the same libraries
(absl's and TensorFlow's loggers, their `warnings`) is held back to errors the same way.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
import threading
import warnings

NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called"  # absl's first line
    rb"|[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w./-]+:\d+\]"  # absl / glog: TensorFlow, XLA, CUDA probes (F shown)
    rb"|\[\d\d:\d\d:\d\d\] [\w./-]+\.(?:cc|h|cpp):\d+: "  # dmlc: decord's own log lines
    rb"|\[[\w,. -]+ @ 0x[0-9a-f]+\] "  # FFmpeg's av_log: [h264 @ 0x5581...]
)
LIBRARIES = ("absl", "tensorflow", "h5py", "keras", "jax", "distributed.utils_perf")  # Python loggers kept to errors
WARNING_MODULES = r"(absl|tensorflow|keras|tf_keras|h5py|google)(\.|$)"  # third-party warnings hidden without -v


def install(verbose: bool) -> None:
    """Set the libraries' log levels before they load; without `verbose`, filter fd 2 (see the module docstring).

    Call once per process, before TensorFlow or decord are imported.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "2")  # still read by TF's Python-side logs
    logging.captureWarnings(True)  # Python warnings in the log's own format
    if verbose:
        return
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=WARNING_MODULES)
    _filter_fd2()


def is_noise(line: bytes) -> bool:
    """A line of one of the libraries' native log formats (`NOISE`), which `install` keeps off the terminal."""
    return NOISE.match(line.lstrip(b"\r")) is not None


def _filter_fd2() -> None:
    """fd 2 -> a pipe read by a thread that forwards all but `is_noise` lines; sys.stderr -> the original fd 2."""
    try:
        sys.stderr.flush()
        terminal = os.dup(2)  # not inherited by children (PEP 446): they write into the pipe
        read_end, write_end = os.pipe()
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (closed, or a wrapped stream): leave it
        return
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    sys.stderr = open(terminal, "w", buffering=1, encoding=encoding, errors="backslashreplace", closefd=False)  # noqa: SIM115
    os.dup2(write_end, 2)
    os.close(write_end)
    reader = threading.Thread(target=_forward, args=(read_end, terminal), name="native-log-filter", daemon=True)
    reader.start()

    def restore():
        """At exit: fd 2 back to the terminal, then let the reader pass on what is still in the pipe."""
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(terminal, 2)
        reader.join(timeout=0.5)  # returns at once when no child still holds the pipe

    atexit.register(restore)


def _forward(read_end: int, terminal: int) -> None:
    """Pass each complete line that is not noise from `read_end` to `terminal`; the rest at end of input."""
    pending = b""
    while True:
        try:
            chunk = os.read(read_end, 65536)
        except OSError:
            chunk = b""
        if not chunk:
            if pending and not is_noise(pending):
                _write(terminal, pending)
            return
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
        if kept:
            _write(terminal, kept)


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the terminal went away: nothing left to show it on
        pass
