"""Stage one on dask: shards of videos as tasks, each worker embedding with a backbone it builds once.

Each task writes its own shard files into the run's folder (the filesystem must be shared); the
process that submitted the tasks merges them afterwards, as the single writer. A task lost with its
worker is retried by dask; the videos of one that still fails are retried one at a time, and a video
that fails alone too is recorded as a `lost` failure, retried by the next run.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pipeline import store
from pipeline.core.errors import BackboneError, InputError
from pipeline.extract.backbones import Backbone, Weights, load_backbone
from pipeline.extract.decoder_pool import worker_count
from pipeline.extract.embedding import embed_videos, require_space

if TYPE_CHECKING:
    from pipeline.extract.config import ExtractSummary, FeatureConfig

log = logging.getLogger(__name__)


def embed_on_dask(
    todo: list,
    run_dir: Path,
    config: FeatureConfig,
    weights: Weights,
    backbone: Backbone,
    summary: ExtractSummary,
    advance,
    *,
    scheduler: str,
    dask_workers: int | None,
    runtime: str,
    timeout: float,
    shard_size: int,
    decode_hook=None,
    scheduler_timeout: float = 20.0,
) -> None:
    """Send shards of `shard_size` videos to dask workers; fold their counts into `summary`.

    Workers build `backbone`'s twin from `config` and `weights` (same batch size) on `runtime`, as
    each worker resolves it. The videos of a task that fails are retried once the other tasks are
    done, each alone on the cluster, so that a worker that dies then died of that video.
    """
    from dask.distributed import as_completed

    with dask_client(scheduler, dask_workers, scheduler_timeout) as client:
        per_host = dict(Counter(urlparse(address).hostname for address in client.scheduler_info()["workers"]))

        def submit(chunk):
            return client.submit(
                _shard_task,
                chunk,
                str(run_dir),
                config,
                weights,
                backbone.batch_size,
                runtime,
                timeout,
                decode_hook,
                per_host,
                pure=False,
            )

        chunks = {submit(todo[i : i + shard_size]): todo[i : i + shard_size] for i in range(0, len(todo), shard_size)}
        alone = []
        for future in as_completed(chunks):
            try:
                _fold(summary, future.result(), advance)
            except BackboneError:
                raise
            except Exception as error:  # e.g. KilledWorker: not the files' fault, as far as anyone knows yet
                log.warning(
                    "a task of %d videos failed on the cluster (%s: %s); retrying each video alone",
                    len(chunks[future]),
                    type(error).__name__,
                    error,
                )
                alone += chunks[future]
        for row in alone:
            try:
                _fold(summary, submit([row]).result(), advance)
            except BackboneError:
                raise
            except Exception as error:
                _record_lost(run_dir, row, error, backbone.dim, config.dtype)
                summary.failed += 1
                advance()


@contextlib.contextmanager
def dask_client(scheduler: str, n_workers: int | None = None, timeout: float = 20.0):
    """A dask Client: `local` starts a LocalCluster of `n_workers` processes, else connect to an address
    (refused, naming it, when it does not answer as a scheduler within `timeout` seconds: `check_scheduler`).

    Workers must not be daemonic: each starts decoder processes of its own (for external clusters,
    start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False).
    """
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler != "local":
        check_scheduler(scheduler, timeout)
        try:
            client = Client(scheduler, timeout=f"{timeout}s")
        except (OSError, TimeoutError) as error:  # it answered check_scheduler a moment ago
            raise InputError(_unanswered(scheduler, timeout, error)) from None
        with client:
            try:  # a scheduler without workers would take the tasks and never run them
                client.wait_for_workers(1, timeout=timeout)
            except TimeoutError:
                raise InputError(
                    f"--scheduler {scheduler}: the scheduler has no workers (none joined within {timeout:g}s, "
                    f"--scheduler-timeout); start workers with `dask worker {scheduler}`, or use --scheduler local"
                ) from None
            yield client
        return
    n_workers = n_workers or max(1, worker_count() // 2)
    with dask.config.set({"distributed.worker.daemon": False}):  # read again whenever a nanny restarts a worker
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                yield client


def check_scheduler(address: str | None, timeout: float) -> None:
    """Refuse a scheduler address (InputError naming it) that is malformed, refuses the connection, or does not
    answer dask's identity request as a scheduler within `timeout` seconds in all; None and `local` pass.

    dask's own Client waits forever on a listener that never answers (an HTTP server, a silent socket),
    gives up on a refused port only after its timeout with a bare OSError, and reads a stranger's reply as
    a message length (a MemoryError of exabytes): the one request here, bounded by `timeout`, catches them all.
    """
    if not address or address == "local":
        return
    import asyncio
    import socket
    import time
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm.addressing import parse_address, parse_host_port

    deadline = time.monotonic() + timeout
    try:
        scheme, location = parse_address(address)
        host, port = parse_host_port(location) if scheme in ("tcp", "tls") else (None, None)
    except ValueError as error:
        raise InputError(f"--scheduler {address}: not a scheduler address ({error}); give tcp://HOST:PORT") from None
    if host is not None:  # a refused port, an unknown host: said at once, with the reason
        try:
            socket.create_connection((host, port), timeout).close()
        except (OSError, OverflowError) as error:
            raise InputError(_unanswered(address, timeout, error)) from None

    async def identity():
        from distributed.comm import connect

        comm = await connect(address, timeout=max(0.1, deadline - time.monotonic()))
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    def ask():  # a loop of its own: the caller may be inside one (a notebook)
        return asyncio.run(asyncio.wait_for(identity(), max(0.1, deadline - time.monotonic())))

    with ThreadPoolExecutor(1) as thread:
        try:
            reply = thread.submit(ask).result()
        except Exception as error:  # timed out, or a stranger's bytes read as a message
            raise InputError(_unanswered(address, timeout, error)) from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        kind = reply.get("type") if isinstance(reply, dict) else type(reply).__name__
        raise InputError(
            f"--scheduler {address}: answers as a dask {kind}, not a scheduler; pass the scheduler's address "
            "(dask-scheduler prints it), or 'local'"
        )


def _unanswered(address: str, timeout: float, error: BaseException) -> str:
    if isinstance(error, TimeoutError):  # socket.timeout too
        what = f"did not answer within {timeout:g}s (--scheduler-timeout)"
    elif isinstance(error, OSError):
        what = f"cannot be reached ({error.strerror or error})"
    else:
        what = f"did not answer as a dask scheduler ({type(error).__name__}: {str(error)[:160]})"
    return (
        f"--scheduler {address}: {what}; check the address (tcp://HOST:8786) and that a dask scheduler runs "
        "there, or use --scheduler local"
    )


# --- helpers ---------------------------------------------------------------------------------


def _fold(summary: ExtractSummary, part: ExtractSummary, advance) -> None:
    """Add a dask task's counts, timings and runtime (workers resolve `auto` each on its own machine) to the run's."""
    summary.runtime = "+".join(sorted({*summary.runtime.split("+"), part.runtime} - {""}))
    summary.new += part.new
    summary.failed += part.failed
    summary.frames += part.frames
    for name, seconds in part.timings.items():
        summary.timings[name] += seconds
    advance(part.new + part.failed)


def _record_lost(run_dir: Path, row, error: Exception, dim: int, dtype: str) -> None:
    """A video whose dask task failed twice, the second time alone: a `lost` failure, retried by the next run."""
    reason = (
        "its worker died (killed by SIGKILL: out of memory?)"
        if type(error).__name__ == "KilledWorker"
        else f"it raised {type(error).__name__}"
    )
    message = (
        f"the dask task extracting it failed twice, the second time alone: {reason}: "
        f"{str(error)[:200]}; the next run retries it"
    )
    log.error("%s: [lost] %s", row.path, message)
    shard = store.Shard()
    shard.add_failure(row, "lost", type(error).__name__, message)
    require_space(run_dir, 0, "a failure record")  # a full disk: exit 2 naming it, not HDF5's crash
    store.write_shard(run_dir, shard, dim, dtype)


def _shard_task(
    rows,
    run_dir: str,
    config: FeatureConfig,
    weights: Weights,
    batch_size: int,
    runtime: str,
    timeout: float,
    decode_hook,
    per_host: dict,
) -> ExtractSummary:
    """A dask task: embed one shard of videos with this worker's cached backbone.

    The worker takes its share of its machine's cores (`per_host`: dask workers per host) for
    TensorFlow's threads and for its decoder processes, as `features` in-process takes them all.
    """
    from dask.distributed import get_worker

    from pipeline.extract.config import ExtractSummary  # extract imports this module

    cores = max(1, worker_count() // per_host.get(urlparse(get_worker().address).hostname, 1))
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(cores)  # leave cores to this host's other workers
    except RuntimeError:  # TensorFlow already running in this worker: the first task's setting stays
        pass
    summary = ExtractSummary(Path(run_dir))
    backbone = _worker_backbone(config, weights, batch_size, runtime)
    embed_videos(
        rows,
        Path(run_dir),
        backbone,
        config,
        summary,
        workers=cores,
        timeout=timeout,
        shard_size=len(rows),
        decode_hook=decode_hook,
    )
    summary.runtime = backbone.runtime
    return summary


@functools.lru_cache(maxsize=2)
def _worker_backbone(config: FeatureConfig, weights: Weights, batch_size: int, runtime: str) -> Backbone:
    """Each worker process builds the backbone once (a converted model from the shared cache) and keeps it for all its
    tasks."""
    if weights.kind == "file" and Weights.parse(weights.path).identity != config.weights:
        raise BackboneError(
            f"weights file {weights.path} on this worker differs from the one the run started with ({config.weights})"
        )
    return load_backbone(
        config.backbone, weights, config.image_size, batch_size, config.precision, runtime, config.pooling
    )
