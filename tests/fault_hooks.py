"""Decoder faults for tests, injected through `extract_features(decode_hook=...)` or `predict_videos(decode_hook=...)`.

They run in the decoder process, before decord sees the file: `hang` spins forever holding the GIL
(like decord's issue #373) after leaving `<video>.hanging` beside the video, `crash` kills its own
process with SIGSEGV (like issue #25), `oom` is killed by SIGKILL as the out-of-memory killer does
it, and `oom-once` only the first time (a `<video>.killed` marker remembers it).
"""

import os
import resource
import signal
from pathlib import Path


def inject(path: str) -> None:
    name = Path(path).name
    if "hang" in name:
        Path(path).with_suffix(".hanging").touch()
        while True:
            pass
    if "crash" in name:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "oom-once" in name:
        marker = Path(path).with_suffix(".killed")
        if not marker.exists():
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
    elif "oom" in name:
        os.kill(os.getpid(), signal.SIGKILL)


def require_decoder_limits(path: str) -> None:
    """Fail the video unless its decoder runs at the lowest CPU priority and can't dump core, as extract sets it."""
    if os.getpriority(os.PRIO_PROCESS, 0) != 19:
        raise RuntimeError(f"decoder runs at priority {os.getpriority(os.PRIO_PROCESS, 0)}, not 19")
    if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
        raise RuntimeError(f"decoder may dump core: RLIMIT_CORE is {resource.getrlimit(resource.RLIMIT_CORE)}")


def kill_dask_worker(path: str) -> None:
    """For a file named *oom*: SIGKILL the dask worker that runs this decoder (what the OOM killer does).

    The decoder's parent is the pool's forkserver, whose parent is the worker process.
    """
    if "oom" in Path(path).name:
        with open(f"/proc/{os.getppid()}/stat") as stat:
            worker = int(stat.read().rsplit(")", 1)[1].split()[1])
        os.kill(worker, signal.SIGKILL)
