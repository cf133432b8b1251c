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
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from . import __version__, store
from .backbones import POOLINGS, Backbone, BackboneError, Weights, check_informative, load_backbone, resolve_precision
from .decode import CROPS, Sampling, decode_job
from .decoder_pool import DecodeFailure, decode_all, worker_count

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
    pooling: str = "avg"  # backbones.POOLINGS; left out of the identity when `avg`, so stores made before it keep their names

    def __post_init__(self):
        Sampling.parse(self.sampling, self.max_frames)  # fail early on a bad policy
        if self.crop not in CROPS:
            raise ValueError(f"crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.dtype not in ("float16", "float32"):
            raise ValueError(f"dtype {self.dtype!r} is not float16 or float32")
        if self.image_size < 32:
            raise ValueError(f"image size {self.image_size} is too small (keras.applications need >= 32)")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")

    def to_dict(self) -> dict:
        config = asdict(self)
        if config["pooling"] == "avg":
            del config["pooling"]
        return config

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
    missing: int = 0  # rows --skip-missing left out: in the failure table as stage `missing`
    unaccounted: int = 0  # manifest rows the merge left neither stored nor failed: a bug or a race, never silent
    frames: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: {"decode": 0.0, "wait_decode": 0.0, "cnn": 0.0, "write": 0.0})

    @property
    def exit_code(self) -> int:
        return 1 if self.failed or self.known_failures or self.lost or self.missing or self.unaccounted else 0

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        known = f" ({self.known_failures} known failures not retried; --retry-failed retries them)" if self.known_failures else ""
        lost = f", {self.lost} not processed (cluster task failed; rerun)" if self.lost else ""
        missing = f", {self.missing} missing files (--skip-missing)" if self.missing else ""
        missing += f", {self.unaccounted} neither stored nor failed (rerun)" if self.unaccounted else ""
        return (f"{self.new} new videos ok, {self.failed} failed, {self.skipped} already stored{known}{lost}{missing}; "
                f"{self.frames} frames in {self.seconds:.1f}s ({rate:.1f} frames/s) -> {self.store_path}")


def store_path_for(manifest_path: str | Path, config: FeatureConfig, out_dir: str | Path = "features") -> Path:
    """features/<manifest name>/<config name>-m<manifest path hash>.h5: one store per manifest and feature config.

    The hash of the manifest's resolved path keeps projA/train.csv and projB/train.csv apart.
    """
    owner = hashlib.sha256(str(Path(manifest_path).resolve()).encode()).hexdigest()[:6]
    return Path(out_dir) / Path(manifest_path).stem / config.store_name().replace(".h5", f"-m{owner}.h5")


def resolve_backbone(config: FeatureConfig, weights: Weights, batch_size: int, fallback: bool,
                     runtime: str = "tensorflow") -> tuple[Backbone, FeatureConfig, str]:
    """Load the backbone before any decoding; with `fallback`, replace unavailable ImageNet weights.

    Returns the backbone, the config actually used, and the fallback note ("" when none) that is
    printed and recorded in the store.
    """
    try:
        return load_backbone(config.backbone, weights, config.image_size, batch_size, config.precision, runtime, config.pooling), config, ""
    except BackboneError as error:
        if not (fallback and weights.kind == "imagenet"):
            raise
        note = (f"ImageNet weights for {config.backbone} are unavailable offline, so this store uses the offline fallback: "
                f"random frozen {FALLBACK['backbone']} at {FALLBACK['image_size']} px (informative for the demo, not for real "
                f"data). Reason: {error}")
        log.warning(note)
        used = replace(config, **FALLBACK, precision=resolve_precision("auto", FALLBACK["backbone"]))
        return load_backbone(used.backbone, Weights("none"), used.image_size, batch_size, used.precision, runtime, used.pooling), used, note


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
    lock_timeout: float = 600.0,
) -> ExtractSummary:
    """Embed every manifest video whose key the store lacks; merge them into the store.

    `manifest` is what `manifest.read_manifest` returns. Videos already stored are skipped, and so
    are videos that failed before with an unchanged file unless `retry_failed`. With `scheduler`
    (`local` for a LocalCluster of `dask_workers` processes, or a scheduler address) the videos go
    out as dask tasks of `shard_size` videos, each worker building `backbone`'s twin from `config`
    and `weights` once, on `runtime` (as the worker resolves it: `auto` picks per machine); otherwise they run here, `workers` decoder processes feeding this process's
    CNN. `decode_hook(path)`, if given, runs in the decoder process before each video (fault
    injection for tests).

    Every run, a no-op included, ends by syncing the store with the manifest (labels, splits,
    groups, retired rows; see `store.merge_shards`), waiting up to `lock_timeout` seconds for
    another run's merge. The manifest's source file and hash (`read_manifest` puts them in
    `manifest.attrs`) are recorded; a store of another manifest or config is refused.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    rows = [store.VideoRow(r.video_id, store.resolved_video_key(r.path), r.path, r.label, r.split, r.group, order)
            for order, r in enumerate(manifest.astype(object).itertuples(index=False))]  # object columns: iterating pandas strings is slow
    missing = [{**row, "key": store.video_key(row["path"])} for row in manifest.attrs.get("missing", [])]
    store_attrs = {"feature_config": config.to_dict(), "config_hash": config.digest(), "versions": library_versions(),
                   "manifest": manifest.attrs.get("source"), "manifest_sha256": manifest.attrs.get("sha256"), **(attrs or {})}
    store.check_owner(store_path, store_attrs)  # before any work; the merge checks again under the lock
    if store_path.exists():
        store.require_segments(store_path)  # a segment gone would read as zeros: refuse, naming it and the recovery
    done, failed_before = _known_keys(store_path)
    summary = ExtractSummary(store_path, total=len(rows) + len(missing), missing=len(missing))
    todo, queued = [], set()
    for row in rows:
        if row.key in done:
            summary.skipped += 1
        elif row.key in failed_before and not retry_failed:
            summary.known_failures += 1
        elif row.key not in queued:  # a file listed under two ids is extracted once and stored under both
            queued.add(row.key)
            todo.append(row)
    log.info("%d videos in manifest: %d already stored, %d to extract%s", len(rows), summary.skipped, len(todo),
             f", {summary.known_failures} known failures skipped" if summary.known_failures else "")

    bar = tqdm(total=len(todo), unit="video", disable=not progress or not todo, dynamic_ncols=True)

    def advance(count: int = 1):
        bar.update(count)
        bar.set_postfix(frames_s=f"{summary.frames / max(1e-9, time.perf_counter() - started):.1f}", failed=summary.failed)

    aborted = False
    with store.shard_run(store_path) as run_dir:
        try:
            if scheduler and todo:
                _embed_on_dask(todo, run_dir, config, weights or backbone.weights, backbone.batch_size, runtime, scheduler, dask_workers,
                               timeout, shard_size, summary, advance, decode_hook, backbone.dim)
            else:
                embed_videos(todo, run_dir, backbone, config, summary, workers=workers, timeout=timeout,
                             shard_size=shard_size, on_video=advance, decode_hook=decode_hook)
        except BackboneError:  # useless features: nothing of this run is worth a store
            aborted = True
            raise
        finally:  # also on Ctrl-C or another error: every finished shard is merged
            bar.close()
            if not aborted:
                t = time.perf_counter()
                report = store.merge_shards(store_path, store_attrs, rows, missing, dim_dtype=(backbone.dim, config.dtype),
                                            lock_timeout=lock_timeout, own_run=run_dir)
                summary.timings["write"] += time.perf_counter() - t
                # the counts of the line are the store's: rows stored, and rows failed, by this run;
                # a manifest row in neither table is counted as such, never hidden in the others
                summary.unaccounted = max(0, summary.total - report.stored - report.failed)
                summary.new = max(0, report.stored - summary.skipped)
                summary.failed = max(0, report.failed - summary.known_failures - summary.missing)
            summary.seconds = time.perf_counter() - started
    return summary


def embed_videos(rows: list, run_dir: Path, backbone: Backbone, config: FeatureConfig, summary: ExtractSummary, *,
                 workers: int = 1, timeout: float = 120.0, shard_size: int = 64, on_video=None, decode_hook=None) -> None:
    """Decode and embed `rows`, writing finished videos to shard files in `run_dir`; count into `summary`.

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
            store.write_shard(run_dir, shard, backbone.dim, config.dtype)
            summary.timings["write"] += time.perf_counter() - t
            shard = store.Shard()

    jobs = ((row, functools.partial(decode_job, row.path, config.image_size, sampling, config.crop, decode_hook)) for row in rows)
    ahead = max(workers * 2 + 1, PREFETCH_FRAMES // sampling.most_frames)
    try:
        with contextlib.closing(decode_all(jobs, workers=workers, timeout=timeout, ahead=ahead, timings=summary.timings)) as outcomes:
            for row, outcome in outcomes:
                if isinstance(outcome, DecodeFailure):
                    fail(row, outcome.stage, outcome.error, outcome.message)
                    continue
                decoded, seconds = outcome
                summary.timings["decode"] += seconds
                for done_row, decoded, features in batcher.add(row, decoded):
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
    """Keys stored (or waiting in shards), and keys that failed for a reason of the file's own."""
    done, failed = store.shard_keys(store_path)
    if store_path.exists():
        stored, failed_before = store.stored_keys(store_path)
        done |= stored
        failed |= failed_before
    return done, failed - done


def _embed_on_dask(todo, run_dir, config, weights, batch_size, runtime, scheduler, dask_workers, timeout, shard_size, summary, advance,
                   decode_hook, dim):
    """Send shards of `shard_size` videos to dask workers; fold their counts into `summary`.

    Each task writes its own shard files into `run_dir` (the filesystem must be shared); this
    process merges them afterwards, as the single writer. A task lost with its worker is retried
    by dask; the videos of one that still fails are retried one at a time once the other tasks are
    done, each alone on the cluster, so that a worker that dies then died of that video: it is
    recorded as a `lost` failure saying what happened, and retried by the next run.
    """
    from dask.distributed import as_completed

    with dask_client(scheduler, dask_workers) as client:
        per_host = dict(Counter(urlparse(address).hostname for address in client.scheduler_info()["workers"]))

        def submit(chunk):
            return client.submit(_shard_task, chunk, str(run_dir), config, weights, batch_size, runtime, timeout, decode_hook, per_host, pure=False)

        chunks = {submit(todo[i:i + shard_size]): todo[i:i + shard_size] for i in range(0, len(todo), shard_size)}
        alone = []
        for future in as_completed(chunks):
            try:
                _fold(summary, future.result(), advance)
            except BackboneError:
                raise
            except Exception as error:  # e.g. KilledWorker: not the files' fault, as far as anyone knows yet
                log.warning("a task of %d videos failed on the cluster (%s: %s); retrying each video alone",
                            len(chunks[future]), type(error).__name__, error)
                alone += chunks[future]
        for row in alone:
            try:
                _fold(summary, submit([row]).result(), advance)
            except BackboneError:
                raise
            except Exception as error:
                _record_lost(run_dir, row, error, dim, config.dtype)
                summary.failed += 1
                advance()


def _fold(summary: ExtractSummary, part: ExtractSummary, advance) -> None:
    """Add a dask task's counts and timings to the run's."""
    summary.new += part.new
    summary.failed += part.failed
    summary.frames += part.frames
    for name, seconds in part.timings.items():
        summary.timings[name] += seconds
    advance(part.new + part.failed)


def _record_lost(run_dir: Path, row, error: Exception, dim: int, dtype: str) -> None:
    """A video whose dask task failed twice, the second time alone: a `lost` failure, retried by the next run."""
    reason = "its worker died (killed by SIGKILL: out of memory?)" if type(error).__name__ == "KilledWorker" else f"it raised {type(error).__name__}"
    message = f"the dask task extracting it failed twice, the second time alone: {reason}: {str(error)[:200]}; the next run retries it"
    log.error("%s: [lost] %s", row.path, message)
    shard = store.Shard()
    shard.add_failure(row, "lost", type(error).__name__, message)
    store.write_shard(run_dir, shard, dim, dtype)


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


def _shard_task(rows, run_dir: str, config: FeatureConfig, weights: Weights, batch_size: int, runtime: str, timeout: float,
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
    summary = ExtractSummary(Path(run_dir))
    backbone = _worker_backbone(config, weights, batch_size, runtime)
    embed_videos(rows, Path(run_dir), backbone, config, summary, workers=cores, timeout=timeout,
                 shard_size=len(rows), decode_hook=decode_hook)
    return summary


@functools.lru_cache(maxsize=2)
def _worker_backbone(config: FeatureConfig, weights: Weights, batch_size: int, runtime: str) -> Backbone:
    """Each worker process builds the backbone once (a converted model from the shared cache) and keeps it for all its tasks."""
    if weights.kind == "file" and Weights.parse(weights.path).identity != config.weights:
        raise BackboneError(f"weights file {weights.path} on this worker differs from the one the run started with ({config.weights})")
    return load_backbone(config.backbone, weights, config.image_size, batch_size, config.precision, runtime, config.pooling)


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
