"""The decoder pool: videos decoded in separate, time-limited processes that die with their parent.

A hang or a crash in FFmpeg costs only that video: a decoder that runs past the time limit is
killed (`timeout`), one that dies is replaced. A death that need not be the file's fault (the
out-of-memory killer's SIGKILL, a pool whose workers all expired) is retried once in a new process
and becomes a failure only if it happens again, with a message that says what happened.

Decoders are bound to the process that started them: on Linux each one asks the kernel for
SIGKILL when its parent (multiprocessing's forkserver) dies, and gives up its handle on the
forkserver's "alive" pipe, so that the forkserver exits as soon as our process does, even
after `kill -9`. Leaving `decode_all` early (Ctrl-C, an error) cancels the queued videos and
stops the decoders at once instead of decoding them first.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import time
from collections import deque
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from pipeline.core.config import Bound
from pipeline.core.errors import error_line
from pipeline.extract.decode import DecodeError, decoder_process_init

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class DecodeFailure:
    """Why one video could not be decoded: failure-table stage, error name and a readable message."""

    stage: str
    error: str
    message: str


def worker_count() -> int:
    """Decoder processes by default: one per core.

    They decode only a few videos ahead of the CNN, so while decoding is the cheaper part they
    mostly wait and leave the cores to TensorFlow, and while it is the costly part (high-resolution
    or long videos, a GPU backbone) they take every core (measured faster end to end than one
    decoder process: README).
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


CORES = worker_count()
WORKERS = Bound(1, 4 * CORES, unit="processes", why="4 per core: more only hold more decoded frames")
DECODE_TIMEOUT = Bound(0, 86_400, float, low_open=True, unit="seconds")


def decode_all(
    jobs: Iterable[tuple[Any, Callable[[], Any]]],
    *,
    workers: int,
    timeout: float,
    ahead: int,
    timings: dict | None = None,
) -> Iterator[tuple[Any, Any]]:
    """Run each `(key, call)` of `jobs` in a decoder process; yield `(key, call() or DecodeFailure)` in order.

    `call` must be picklable (a module-level function or a `functools.partial` of one). Up to
    `ahead` jobs run or wait ahead of the consumer; each may take `timeout` seconds. The seconds
    the consumer spent waiting are added to `timings["wait_decode"]`. Close the generator (or
    exhaust it) to stop the decoders; a `with contextlib.closing(...)` does it on every way out.
    `workers` < 1 would never run a job (a hang), and a `timeout` <= 0 none (pebble's "no limit"): both refused.
    """
    WORKERS.check("workers", workers)
    DECODE_TIMEOUT.check("timeout", timeout)
    pools = _Pools(workers, timeout)
    queue = iter(jobs)

    def submit():
        item = next(queue, None)
        if item is not None:
            pools.pending.append(pools.schedule(_Job(*item)))

    try:
        for _ in range(max(1, ahead)):
            submit()
        while pools.pending:
            waited = time.perf_counter()
            outcome = pools.outcome(pools.pending[0])
            if timings is not None:
                timings["wait_decode"] += time.perf_counter() - waited
            if outcome is _RETRIED:
                continue
            job = pools.pending.popleft()
            submit()
            yield job.key, outcome
    finally:
        pools.shutdown()


def with_hook(hook: Callable[[str], None], path: str, call: Callable[[], Any]) -> Any:
    """A job that runs `hook(path)` in the decoder first (fault injection for tests), then `call()`."""
    hook(path)
    return call()


# --- helpers ---------------------------------------------------------------------------------


_RETRIED = object()  # outcome() resubmitted the job: wait for it again


@dataclass
class _Job:
    key: Any
    call: Callable[[], Any]
    future: Any = None
    pool: Any = None
    attempts: int = 0
    outcome: Any = None  # a failure decided without a future (the pool broke twice)


class _Pools:
    """The main pool, and a pool for retries whose every job gets a new process (max_tasks=1).

    A pool that breaks ("All workers expired") is replaced and its unfinished jobs resubmitted.
    """

    def __init__(self, workers: int, timeout: float):
        self.workers, self.timeout = workers, timeout
        self.context = multiprocessing.get_context("forkserver")  # never fork a process that holds TensorFlow
        self.context.set_forkserver_preload(
            ["pipeline.extract.decoder_pool", "decord"]
        )  # imported once; a new decoder starts at once
        self.pools = {"main": None, "retry": None}
        self.pending: deque[_Job] = deque()  # in the consumer's order

    def schedule(self, job: _Job) -> _Job:
        job.attempts += 1
        job.pool = self._pool("retry" if job.attempts > 1 else "main")
        job.future = job.pool.schedule(_run, (job.call,), timeout=self.timeout)
        return job

    def outcome(self, job: _Job):
        """The job's result or DecodeFailure; _RETRIED if it was resubmitted after a death that may not be its fault."""
        from pebble import ProcessExpired

        if job.outcome is not None:
            return job.outcome
        try:
            return job.future.result()
        except DecodeError as error:
            return DecodeFailure(error.stage, error.detail.split(":")[0] or "DecodeError", error.reason)
        except FutureTimeout:
            return DecodeFailure(
                "timeout",
                "Timeout",
                f"decoding took longer than {self.timeout:g}s; the decoder was stopped "
                "(raise --timeout for very long videos)",
            )
        except ProcessExpired as error:
            if job.attempts < 2:
                self.schedule(job)
                return _RETRIED
            return _death(error.exitcode)
        except BrokenProcessPool:
            self._replace(job.pool)
            return _RETRIED
        except Exception as error:  # anything else decord raises is this video's problem only
            return DecodeFailure("decode", type(error).__name__, error_line(error, with_type=False))

    def shutdown(self) -> None:
        """Drop the queued jobs and stop every decoder now."""
        for job in self.pending:
            if job.future is not None:
                job.future.cancel()
        for pool in self.pools.values():
            if pool is not None:
                _stop(pool)

    def _pool(self, kind: str):
        from pebble import ProcessPool

        pool = self.pools[kind]
        if pool is not None and not pool.active:  # broke before a result told us
            self._replace(pool)
            pool = self.pools[kind]
        if pool is None:
            retry = kind == "retry"
            pool = self.pools[kind] = ProcessPool(
                max_workers=self.workers,
                max_tasks=1 if retry else 0,
                context=self.context,
                initializer=_start_decoder,
                initargs=(os.getpid(),),
            )
        return pool

    def _replace(self, broken) -> None:
        """Stop a broken pool and resubmit its unfinished jobs; a job caught in two breaks fails."""
        for kind, pool in self.pools.items():
            if pool is broken:
                self.pools[kind] = None
        for job in self.pending:
            if job.pool is not broken or job.outcome is not None:
                continue
            if (
                job.future.done()
                and not job.future.cancelled()
                and not isinstance(job.future.exception(), BrokenProcessPool)
            ):
                continue  # finished before the break: keep its result
            if not job.future.done():
                job.future.cancel()
                job.attempts -= 1  # never reached a decoder: not a try
            job.pool = None
            if job.attempts >= 2:
                job.outcome = DecodeFailure(
                    "killed",
                    "BrokenPool",
                    "the decoder pool broke twice while this video was decoding or "
                    "queued (All workers expired: a decoder process was killed, e.g. by the out-of-memory "
                    "killer); rerun with --retry-failed",
                )
        _stop(broken)
        for job in self.pending:
            if job.pool is None and job.outcome is None:
                self.schedule(job)


def _stop(pool) -> None:
    """Stop a pool now: running decoders are terminated (killed after 3 s), queued jobs dropped."""
    pool.stop()
    pool.join()


def _death(exitcode: int) -> DecodeFailure:
    """A decoder died on this video twice, the second time in a new process."""
    if exitcode == -signal.SIGKILL:
        return DecodeFailure(
            "killed",
            "DecoderKilled",
            "the decoder was killed by SIGKILL (out of memory?) on this video, also when "
            "retried in a new process; free memory or lower --workers, then rerun with "
            "--retry-failed",
        )
    return DecodeFailure(
        "crash",
        "DecoderCrash",
        f"the decoder process died ({_signal_name(exitcode)}) on this file, also when "
        "retried in a new process; it is likely corrupt",
    )


def _signal_name(exitcode: int) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"


def _run(call: Callable[[], Any]) -> Any:
    return call()


def _start_decoder(parent_pid: int) -> None:
    """Initializer of every decoder process: lowest CPU priority, and die with `parent_pid`."""
    decoder_process_init()
    _die_with_parent(parent_pid)


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this decoder cannot outlive the process that started the pool.

    Our parent is multiprocessing's forkserver, which exits when every holder of its "alive" pipe
    is gone; each child inherits one, so a hung decoder would keep the forkserver (and so itself)
    alive forever. A decoder starts no processes, so it closes its copy, and asks the kernel for
    SIGKILL when the forkserver exits; that works even while a hang holds the GIL.
    """
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    if getattr(server, "_forkserver_alive_fd", None) is not None:
        os.close(server._forkserver_alive_fd)
        server._forkserver_alive_fd = None
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        os.kill(parent_pid, 0)  # gone before the request above took effect: leave now
    except ProcessLookupError:
        os._exit(1)
