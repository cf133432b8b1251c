"""Stage one: from a manifest to an HDF5 feature store.

Videos are decoded in worker processes (a hang or a crash in FFmpeg costs only that video: it
becomes a `timeout` or `crash` failure), while the main process runs the CNN on fixed-size batches
filled with frames from many videos. Finished videos are written to shard files as they complete
and merged into the store at the end (see `store`), so a killed run loses at most one shard.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import multiprocessing
import os
import signal
import time
from collections import Counter, deque
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from . import __version__, store
from .backbones import Backbone, BackboneError, Weights, check_informative, load_backbone, resolve_precision
from .decode import CROPS, DecodeError, Sampling, decode_job, decoder_process_init

log = logging.getLogger(__name__)

FALLBACK = {"backbone": "vgg16", "weights": "none", "image_size": 112}
# Decoded frames that may wait for the CNN (29 MB at 224 px). A deep queue of short videos lets
# every decoder work on while the CNN waits for a slow one: 12 videos of 16 frames ahead instead
# of 5 measured 1.05x faster end to end; long videos still get 2 per decoder, which bounds memory.
PREFETCH_FRAMES = 192


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides what a stored feature means; its hash names the store file."""

    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"  # identity: imagenet, none, or sha256:<hex> of a weights file
    image_size: int = 224
    crop: str = "center"
    sampling: str = "uniform:16"
    max_frames: int = 512
    dtype: str = "float16"
    precision: str = "float32"  # CNN arithmetic (float32 or bfloat16): it changes the values, so it is part of the identity

    def __post_init__(self):
        Sampling.parse(self.sampling, self.max_frames)  # fail early on a bad policy
        if self.crop not in CROPS:
            raise ValueError(f"crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype {self.dtype!r} is not float16 or float32")
        if self.image_size < 32:
            raise ValueError(f"image size {self.image_size} is too small (keras.applications need >= 32)")

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]

    def store_name(self) -> str:
        weights = self.weights.replace("sha256:", "w")[:9]
        return f"{self.backbone}-{weights}-{self.image_size}px-{self.digest()}.h5"


@dataclass
class ExtractSummary:
    """What a run did; `exit_code` is 0 when every video of the manifest is in the store."""

    store_path: Path
    total: int = 0
    new: int = 0
    failed: int = 0
    skipped: int = 0
    known_failures: int = 0
    lost: int = 0  # videos of dask tasks that failed for good: neither stored nor failed
    frames: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: {"decode": 0.0, "wait_decode": 0.0, "cnn": 0.0, "write": 0.0})

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.known_failures or self.lost else 0

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        known = f" ({self.known_failures} known failures not retried; --retry-failed retries them)" if self.known_failures else ""
        lost = f", {self.lost} not processed (cluster task failed; rerun)" if self.lost else ""
        return (f"{self.new} new videos ok, {self.failed} failed, {self.skipped} already stored{known}{lost}; "
                f"{self.frames} frames in {self.seconds:.1f}s ({rate:.1f} frames/s) -> {self.store_path}")


def store_path_for(manifest_path: str | Path, config: FeatureConfig, out_dir: str | Path = "features") -> Path:
    """features/<manifest name>/<config name>.h5: one store per manifest and feature config."""
    return Path(out_dir) / Path(manifest_path).stem / config.store_name()


def resolve_backbone(config: FeatureConfig, weights: Weights, batch_size: int, fallback: bool,
                     runtime: str = "tensorflow") -> tuple[Backbone, FeatureConfig, str]:
    """Load the backbone before any decoding; with `fallback`, replace unavailable ImageNet weights.

    Returns the backbone, the config actually used, and the fallback note ("" when none) that is
    printed and recorded in the store.
    """
    try:
        return load_backbone(config.backbone, weights, config.image_size, batch_size, config.precision, runtime), config, ""
    except BackboneError as error:
        if not (fallback and weights.kind == "imagenet"):
            raise
        note = (f"ImageNet weights for {config.backbone} are unavailable offline, so this store uses the offline fallback: "
                f"random frozen {FALLBACK['backbone']} at {FALLBACK['image_size']} px (informative for the demo, not for real "
                f"data). Reason: {error}")
        log.warning(note)
        used = replace(config, **FALLBACK, precision=resolve_precision("auto", FALLBACK["backbone"]))
        return load_backbone(used.backbone, Weights("none"), used.image_size, batch_size, used.precision, runtime), used, note


def extract_features(
    manifest: pd.DataFrame,
    store_path: str | Path,
    backbone: Backbone,
    config: FeatureConfig,
    *,
    weights: Weights | None = None,
    attrs: dict | None = None,
    scheduler: str | None = None,
    runtime: str = "tensorflow",
    dask_workers: int | None = None,
    workers: int = 1,
    timeout: float = 120.0,
    shard_size: int = 64,
    retry_failed: bool = False,
    progress: bool = True,
    decode_hook=None,
) -> ExtractSummary:
    """Embed every manifest video whose key the store lacks; merge them into the store.

    `manifest` is what `manifest.read_manifest` returns. Videos already stored are skipped, and so
    are videos that failed before with an unchanged file unless `retry_failed`. With `scheduler`
    (`local` for a LocalCluster of `dask_workers` processes, or a scheduler address) the videos go
    out as dask tasks of `shard_size` videos, each worker building `backbone`'s twin from `config`
    and `weights` once, on `runtime` (as the worker resolves it: `auto` picks per machine); otherwise they run here, `workers` decoder processes feeding this process's
    CNN. `decode_hook(path)`, if given, runs in the decoder process before each video (fault
    injection for tests).
    """
    from tqdm import tqdm

    started = time.perf_counter()
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    rows = [store.VideoRow(r.video_id, store.video_key(r.path), r.path, r.label, r.split, r.group, order)
            for order, r in enumerate(manifest.itertuples(index=False))]
    done, failed_before = _known_keys(store_path)
    summary = ExtractSummary(store_path, total=len(rows))
    todo = []
    for row in rows:
        if row.key in done:
            summary.skipped += 1
        elif row.key in failed_before and not retry_failed:
            summary.known_failures += 1
        else:
            todo.append(row)
    log.info("%d videos in manifest: %d already stored, %d to extract%s", len(rows), summary.skipped, len(todo),
             f", {summary.known_failures} known failures skipped" if summary.known_failures else "")
    store_attrs = {"feature_config": config.to_dict(), "config_hash": config.digest(), "versions": library_versions(), **(attrs or {})}

    bar = tqdm(total=len(todo), unit="video", disable=not progress or not todo, dynamic_ncols=True)

    def advance(count: int = 1):
        bar.update(count)
        bar.set_postfix(frames_s=f"{summary.frames / max(1e-9, time.perf_counter() - started):.1f}", failed=summary.failed)

    aborted = False
    try:
        if scheduler and todo:
            _embed_on_dask(todo, store_path, config, weights or backbone.weights, backbone.batch_size, runtime, scheduler,
                           dask_workers, timeout, shard_size, summary, advance, decode_hook)
        else:
            embed_videos(todo, store_path, backbone, config, summary, workers=workers, timeout=timeout,
                         shard_size=shard_size, on_video=advance, decode_hook=decode_hook)
    except BackboneError:  # useless features: nothing of this run is worth a store
        aborted = True
        raise
    finally:  # also on Ctrl-C or another error: every finished shard is merged
        bar.close()
        if not aborted:
            t = time.perf_counter()
            store.merge_shards(store_path, store_attrs)
            summary.timings["write"] += time.perf_counter() - t
        summary.seconds = time.perf_counter() - started
    return summary


def embed_videos(rows: list, store_path: Path, backbone: Backbone, config: FeatureConfig, summary: ExtractSummary, *,
                 workers: int = 1, timeout: float = 120.0, shard_size: int = 64, on_video=None, decode_hook=None) -> None:
    """Decode and embed `rows`, writing finished videos to shard files; count into `summary`.

    This is one unit of work, run in-process or as a dask task; merging the shards is the caller's.
    """
    sampling = Sampling.parse(config.sampling, config.max_frames)
    shard = store.Shard()
    batcher = _FrameBatcher(backbone, summary.timings)

    def finish(row, decoded, features):
        shard.add_video(row, features.astype(config.dtype), decoded.frame_index, decoded.timestamps,
                        decoded.total_frames, decoded.fps, decoded.width, decoded.height)
        summary.new += 1
        summary.frames += len(features)
        advance()

    def fail(row, stage, error, message):
        log.warning("%s: [%s] %s", row.path, stage, message)
        shard.add_failure(row, stage, error, message)
        summary.failed += 1
        advance()

    def advance():
        if on_video:
            on_video()
        if len(shard) >= shard_size:
            flush()

    def flush():
        nonlocal shard
        if len(shard):
            t = time.perf_counter()
            store.write_shard(store_path, shard, backbone.dim, config.dtype)
            summary.timings["write"] += time.perf_counter() - t
            shard = store.Shard()

    try:
        for row, outcome in _decode_all(rows, config, sampling, workers, timeout, summary.timings, decode_hook):
            if isinstance(outcome, tuple):
                fail(row, *outcome)
                continue
            for done_row, decoded, features in batcher.add(row, outcome):
                finish(done_row, decoded, features)
        for done_row, decoded, features in batcher.drain():
            finish(done_row, decoded, features)
    except BackboneError:
        raise  # useless features: nothing of this run is worth keeping
    except BaseException:
        flush()  # Ctrl-C or another error: keep every finished video
        raise
    flush()


def library_versions() -> dict:
    """Versions recorded in the store, so a feature can be traced to the code that made it."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"pipeline": __version__}
    for name in ("tensorflow", "keras", "decord", "h5py", "numpy"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


# --- helpers ---------------------------------------------------------------------------------


def _known_keys(store_path: Path) -> tuple[set[str], set[str]]:
    done, failed = store.shard_keys(store_path)
    if store_path.exists():
        done |= set(store.read_videos(store_path)["key"])
        failed |= set(store.read_failures(store_path)["key"])
    return done, failed - done


def _embed_on_dask(todo, store_path, config, weights, batch_size, runtime, scheduler, dask_workers, timeout, shard_size, summary, advance,
                   decode_hook):
    """Send shards of `shard_size` videos to dask workers; fold their counts into `summary`.

    Each task writes its own shard files beside the store (the filesystem must be shared); this
    process merges them afterwards, as the single writer. A task lost with its worker is retried
    by dask; one that still fails leaves its videos unprocessed, for the next run to complete.
    """
    from dask.distributed import as_completed

    with dask_client(scheduler, dask_workers) as client:
        chunks = [todo[i:i + shard_size] for i in range(0, len(todo), shard_size)]
        per_host = dict(Counter(urlparse(address).hostname for address in client.scheduler_info()["workers"]))
        futures = {client.submit(_shard_task, chunk, str(store_path), config, weights, batch_size, runtime, timeout, decode_hook,
                                 per_host, pure=False): chunk
                   for chunk in chunks}
        for future in as_completed(futures):
            try:
                part = future.result()
            except BackboneError:
                raise
            except Exception as error:  # e.g. KilledWorker: the shard is not stored, a rerun completes it
                log.error("a task of %d videos failed on the cluster (%s: %s); rerun to complete them",
                          len(futures[future]), type(error).__name__, error)
                summary.lost += len(futures[future])
                advance(len(futures[future]))
                continue
            summary.new += part.new
            summary.failed += part.failed
            summary.frames += part.frames
            for name, seconds in part.timings.items():
                summary.timings[name] += seconds
            advance(part.new + part.failed)


@contextlib.contextmanager
def dask_client(scheduler: str, n_workers: int | None = None):
    """A dask Client: `local` starts a LocalCluster of `n_workers` processes, else connect to an address.

    Workers must not be daemonic: each starts decoder processes of its own (for external clusters,
    start workers with DASK_DISTRIBUTED__WORKER__DAEMON=False).
    """
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler != "local":
        with Client(scheduler, timeout="30s") as client:
            yield client
        return
    n_workers = n_workers or max(1, worker_count() // 2)
    with dask.config.set({"distributed.worker.daemon": False}):  # read again whenever a nanny restarts a worker
        with LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            with Client(cluster) as client:
                yield client


def _shard_task(rows, store_path: str, config: FeatureConfig, weights: Weights, batch_size: int, runtime: str, timeout: float,
                decode_hook, per_host: dict) -> "ExtractSummary":
    """A dask task: embed one shard of videos with this worker's cached backbone.

    The worker takes its share of its machine's cores (`per_host`: dask workers per host) for
    TensorFlow's threads and for its decoder processes, as `features` in-process takes them all.
    """
    from dask.distributed import get_worker

    cores = max(1, worker_count() // per_host.get(urlparse(get_worker().address).hostname, 1))
    try:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(cores)  # leave cores to this host's other workers
    except RuntimeError:  # TensorFlow already running in this worker: the first task's setting stays
        pass
    summary = ExtractSummary(Path(store_path))
    backbone = _worker_backbone(config, weights, batch_size, runtime)
    embed_videos(rows, Path(store_path), backbone, config, summary, workers=cores, timeout=timeout,
                 shard_size=len(rows), decode_hook=decode_hook)
    return summary


@functools.lru_cache(maxsize=2)
def _worker_backbone(config: FeatureConfig, weights: Weights, batch_size: int, runtime: str) -> Backbone:
    """Each worker process builds the backbone once (a converted model from the shared cache) and keeps it for all its tasks."""
    if weights.kind == "file" and Weights.parse(weights.path).identity != config.weights:
        raise BackboneError(f"weights file {weights.path} on this worker differs from the one the run started with ({config.weights})")
    return load_backbone(config.backbone, weights, config.image_size, batch_size, config.precision, runtime)


def _decode_all(rows, config: FeatureConfig, sampling: Sampling, workers: int, timeout: float, timings: dict, hook=None):
    """Yield (row, DecodedVideo) or (row, (stage, error, message)) in manifest order.

    Decoding runs in `workers` processes, a few videos ahead of the consumer (PREFETCH_FRAMES),
    each video limited to `timeout` seconds. A process that hangs is killed and replaced; one that
    dies (a segfault in FFmpeg) is replaced too; either way only that video fails.
    """
    from pebble import ProcessExpired, ProcessPool

    if not rows:
        return
    context = multiprocessing.get_context("forkserver")  # never fork a process that holds TensorFlow
    context.set_forkserver_preload(["pipeline.decode", "decord"])  # imported once; a replaced decoder starts at once
    with ProcessPool(max_workers=workers, context=context, initializer=decoder_process_init) as pool:
        pending = deque()
        queue = iter(rows)

        def submit():
            row = next(queue, None)
            if row is not None:
                pending.append((row, pool.schedule(decode_job, (row.path, config.image_size, sampling, config.crop, hook), timeout=timeout)))

        for _ in range(max(workers * 2 + 1, PREFETCH_FRAMES // sampling.most_frames)):
            submit()
        while pending:
            row, future = pending.popleft()
            waited = time.perf_counter()
            try:
                decoded, seconds = future.result()
                timings["decode"] += seconds
                outcome = decoded
            except DecodeError as error:
                outcome = (error.stage, error.detail.split(":")[0] or "DecodeError", error.reason)
            except FutureTimeout:
                outcome = ("timeout", "Timeout", f"decoding took longer than {timeout:g}s; the decoder was stopped (raise --timeout for very long videos)")
            except ProcessExpired as error:
                outcome = ("crash", "DecoderCrash", f"the decoder process died ({_signal_name(error.exitcode)}) on this file; it is likely corrupt")
            except Exception as error:  # anything else decord raises is this video's problem only
                outcome = ("decode", type(error).__name__, str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__)
            timings["wait_decode"] += time.perf_counter() - waited
            submit()
            yield row, outcome


def _signal_name(exitcode: int) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            pass
    return f"exit code {exitcode}"


class _FrameBatcher:
    """Fills fixed-size CNN batches with frames from consecutive videos; returns finished videos."""

    def __init__(self, backbone: Backbone, timings: dict):
        self.backbone, self.timings = backbone, timings
        self.queue: deque = deque()  # [row, decoded, features, frames embedded so far]
        self.ready = 0
        self.checked = False

    def add(self, row, decoded) -> list:
        self.queue.append([row, decoded, np.empty((len(decoded.frames), self.backbone.dim), np.float32), 0])
        self.ready += len(decoded.frames)
        finished = []
        while self.ready >= self.backbone.batch_size:
            finished += self._run(self.backbone.batch_size)
        return finished

    def drain(self) -> list:
        finished = []
        while self.ready:
            finished += self._run(min(self.ready, self.backbone.batch_size))
        return finished

    def _run(self, count: int) -> list:
        parts, taken = [], 0
        for entry in self.queue:
            if taken == count:
                break
            start = entry[3]
            take = min(count - taken, len(entry[1].frames) - start)
            parts.append((entry, start, take))
            taken += take
        batch = np.concatenate([entry[1].frames[start:start + take] for entry, start, take in parts])
        t = time.perf_counter()
        features = self.backbone.embed(batch)
        self.timings["cnn"] += time.perf_counter() - t
        if not self.checked:
            check_informative(batch, features, self.backbone)
            self.checked = True
        offset = 0
        for entry, start, take in parts:
            entry[2][start:start + take] = features[offset:offset + take]
            entry[3] += take
            offset += take
        self.ready -= count
        finished = []
        while self.queue and self.queue[0][3] == len(self.queue[0][1].frames):
            row, decoded, feats, _ = self.queue.popleft()
            finished.append((row, decoded, feats))
        return finished


def worker_count() -> int:
    """Decoder processes by default: one per core.

    They decode only a few videos ahead of the CNN, so while decoding is the cheaper part they
    mostly wait and leave the cores to TensorFlow, and while it is the costly part (high-resolution
    or long videos, a GPU backbone) they take every core. On 2 cores this measured 1.2x faster
    end to end than one decoder process.
    """
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
