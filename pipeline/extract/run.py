"""Stage one: from a manifest to an HDF5 feature store.

`extract_manifest` is the entry point (manifest path and feature config in, summary out), what
`python -m pipeline features` runs. `extract_features` is the orchestration: which videos the store
lacks, embedding them here (`embedding`: decoder processes feed this process's CNN, so a hang or a
crash in FFmpeg costs only that video) or on dask (`cluster`), and the merge of the finished shards
into the store at the end (`store`), which also syncs it with the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from pipeline import __version__, store
from pipeline.core.device import log_tensorflow_device
from pipeline.core.errors import BackboneError, InputError
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.backbones import Backbone, Weights, canonical_name
from pipeline.extract.cluster import check_scheduler, embed_on_dask
from pipeline.extract.config import (
    BATCH_SIZE,
    DECODE_TIMEOUT_S,
    FALLBACK,
    LOCK_TIMEOUT_S,
    RUN_OPTIONS,
    SCHEDULER_TIMEOUT_S,
    SHARD_SIZE,
    STORES_DIR,
    ExtractSummary,
    FeatureConfig,
    check_options,
)
from pipeline.extract.decoder_pool import worker_count
from pipeline.extract.embedding import embed_videos, require_space
from pipeline.extract.fallback import resolve_backbone

log = logging.getLogger(__name__)


def store_path_for(manifest_path: str | Path, config: FeatureConfig, out_dir: str | Path = STORES_DIR) -> Path:
    """features/<manifest name>/<FeatureConfig.store_name>: one store per manifest and feature config.

    The manifest's resolved path is part of the name's hash, which keeps projA/train.csv and
    projB/train.csv apart. A store an earlier version named by hashes alone
    (<backbone>-<weights>-<size>px-<digest>-m<manifest path hash>.h5) is used where it exists and
    the readable name does not: it is found, never renamed behind the user's back.
    """
    folder = Path(out_dir) / Path(manifest_path).stem
    owner = str(Path(manifest_path).resolve())
    readable, legacy = folder / config.store_name(folder.name, owner), folder / config.legacy_store_name(owner)
    return legacy if legacy.exists() and not readable.exists() else readable


def extract_manifest(
    manifest_path: str | Path,
    config: FeatureConfig = FeatureConfig(),
    weights: str | None = None,
    *,
    store_path: str | Path | None = None,
    out_dir: str | Path = STORES_DIR,
    batch_size: int = BATCH_SIZE,
    runtime: str = "tensorflow",
    fallback: bool = False,
    fallback_size: int = FALLBACK["image_size"],
    skip_missing: bool = False,
    workers: int | None = None,
    **options,
) -> ExtractSummary:
    """Stage one from Python: embed every video of a manifest the store lacks, and sync the store with it.

    `weights` is what `--weights` takes (imagenet, none or a weights file; default: `config.weights`);
    `config.precision` may be `auto`. The store is `store_path`, else `store_path_for(manifest_path,
    config, out_dir)`, its folder made once the backbone has loaded. With `fallback`, ImageNet
    weights unavailable offline are replaced, at `fallback_size` px (see `resolve_backbone`; the note
    is `summary.fallback`).
    `workers` decoder processes (default: one per core); `options` go to `extract_features`
    (scheduler, scheduler_timeout, dask_workers, timeout, shard_size, retry_failed, progress, lock_timeout,
    decode_hook). Options out of range and a scheduler address that does not answer are refused before any work.
    """
    workers = worker_count() if workers is None else workers
    check_options(batch_size=batch_size, workers=workers, **{k: v for k, v in options.items() if k in RUN_OPTIONS})
    check_scheduler(options.get("scheduler"), options.get("scheduler_timeout", SCHEDULER_TIMEOUT_S))
    manifest = read_manifest(manifest_path, skip_missing=skip_missing)
    weights = Weights.parse(weights or config.weights)
    config = replace(config, backbone=canonical_name(config.backbone), weights=weights.identity)
    if runtime in ("auto", "tensorflow"):
        log_tensorflow_device()
    backbone, config, note = resolve_backbone(config, weights, batch_size, fallback, runtime, fallback_size)
    _make_folder(*(("--store", Path(store_path).parent) if store_path else ("--out-dir", Path(out_dir))))
    store_path = Path(store_path) if store_path else store_path_for(manifest_path, config, out_dir)
    attrs = {"weights_path": weights.path, "fallback": note, "runtime": backbone.runtime}
    summary = extract_features(
        manifest,
        store_path,
        backbone,
        config,
        weights=Weights("none") if note else weights,
        attrs=attrs,
        runtime=runtime,
        workers=workers,
        **options,
    )
    summary.runtime, summary.fallback = summary.runtime or backbone.runtime, note
    return summary


def extract_features(
    manifest: pd.DataFrame,
    store_path: str | Path,
    backbone: Backbone,
    config: FeatureConfig,
    *,
    weights: Weights | None = None,
    attrs: dict | None = None,
    scheduler: str | None = None,
    scheduler_timeout: float = SCHEDULER_TIMEOUT_S,
    runtime: str = "tensorflow",
    dask_workers: int | None = None,
    workers: int = 1,
    timeout: float = DECODE_TIMEOUT_S,
    shard_size: int = SHARD_SIZE,
    retry_failed: bool = False,
    progress: bool = True,
    decode_hook=None,
    lock_timeout: float = LOCK_TIMEOUT_S,
) -> ExtractSummary:
    """Embed every manifest video whose key the store lacks; merge them into the store.

    `manifest` is what `manifest.read_manifest` returns. Videos already stored are skipped, and so
    are videos that failed before with an unchanged file unless `retry_failed`. With `scheduler`
    (`local` for a LocalCluster of `dask_workers` processes, or a scheduler address) the videos go
    out as dask tasks of `shard_size` videos, each worker building `backbone`'s twin from `config`
    and `weights` once, on `runtime` (as the worker resolves it: `auto` picks per machine; an address that does
    not answer within `scheduler_timeout` seconds is refused before any work, see `cluster.check_scheduler`); otherwise
    they run here, `workers` decoder processes feeding this process's CNN. `decode_hook(path)`, if
    given, runs in the decoder process before each video (fault injection for tests).

    Every run, a no-op included, ends by syncing the store with the manifest (labels, splits,
    groups, retired rows; see `store.merge_shards`), waiting up to `lock_timeout` seconds for
    another run's merge. The manifest's source file and hash (`read_manifest` puts them in
    `manifest.attrs`) are recorded; a store of another manifest or config is refused.
    """
    from tqdm import tqdm

    started = time.perf_counter()
    check_options(
        workers=workers,
        dask_workers=dask_workers,
        timeout=timeout,
        shard_size=shard_size,
        lock_timeout=lock_timeout,
        scheduler_timeout=scheduler_timeout,
    )
    check_scheduler(scheduler, scheduler_timeout)
    store_path = Path(store_path)
    store_path.parent.mkdir(parents=True, exist_ok=True)
    rows, missing = _manifest_rows(manifest)
    store_attrs = {
        "feature_config": config.to_dict(),
        "config_hash": config.digest(),
        "versions": library_versions(),
        "manifest": manifest.attrs.get("source"),
        "manifest_sha256": manifest.attrs.get("sha256"),
        **(attrs or {}),
    }
    store.check_owner(store_path, store_attrs)  # before any work; the merge checks again under the lock
    if store_path.exists():
        store.require_segments(store_path)  # a segment gone would read as zeros: refuse, naming it and the recovery
    summary = ExtractSummary(store_path, total=len(rows) + len(missing), missing=len(missing))
    todo = _videos_to_extract(store_path, rows, retry_failed, summary)
    bar = tqdm(total=len(todo), unit="video", disable=not progress or not todo, dynamic_ncols=True)

    def advance(count: int = 1):
        bar.update(count)
        bar.set_postfix(
            frames_s=f"{summary.frames / max(1e-9, time.perf_counter() - started):.1f}", failed=summary.failed
        )

    aborted = False
    with store.shard_run(store_path) as run_dir:
        try:
            if scheduler and todo:
                embed_on_dask(
                    todo,
                    run_dir,
                    config,
                    weights or backbone.weights,
                    backbone,
                    summary,
                    advance,
                    scheduler=scheduler,
                    scheduler_timeout=scheduler_timeout,
                    dask_workers=dask_workers,
                    runtime=runtime,
                    timeout=timeout,
                    shard_size=shard_size,
                    decode_hook=decode_hook,
                )
            else:
                embed_videos(
                    todo,
                    run_dir,
                    backbone,
                    config,
                    summary,
                    workers=workers,
                    timeout=timeout,
                    shard_size=shard_size,
                    on_video=advance,
                    decode_hook=decode_hook,
                )
        except BackboneError:  # useless features: nothing of this run is worth a store
            aborted = True
            raise
        finally:  # also on Ctrl-C or another error: every finished shard is merged
            bar.close()
            if not aborted:  # and on a full disk, not at all: the next run merges the shards written
                require_space(store_path.parent, 2048 * len(rows), "merging this run's shards")
                # the runtime that embedded this run's videos (on dask: the workers'); a run that embedded none keeps
                # the store's
                store_attrs["runtime"] = (summary.runtime or store_attrs.get("runtime")) if summary.new else None
                t = time.perf_counter()
                report = store.merge_shards(
                    store_path,
                    store_attrs,
                    rows,
                    missing,
                    dim_dtype=(backbone.dim, config.dtype),
                    lock_timeout=lock_timeout,
                    own_run=run_dir,
                )
                summary.timings["write"] += time.perf_counter() - t
                _count_stored(summary, report, store_path)
            summary.seconds = time.perf_counter() - started
    return summary


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


def _manifest_rows(manifest: pd.DataFrame) -> tuple[list[store.VideoRow], list[dict]]:
    """The manifest's videos as store rows, keyed by file; and the rows --skip-missing left out, keyed too."""
    rows = [
        store.VideoRow(r.video_id, store.resolved_video_key(r.path), r.path, r.label, r.split, r.group, order)
        for order, r in enumerate(manifest.astype(object).itertuples(index=False))
    ]  # object columns: iterating pandas strings is slow
    missing = [{**row, "key": store.video_key(row["path"])} for row in manifest.attrs.get("missing", [])]
    return rows, missing


def _videos_to_extract(
    store_path: Path, rows: list[store.VideoRow], retry_failed: bool, summary: ExtractSummary
) -> list:
    """The rows whose key the store lacks, each file once; counts the skipped ones into `summary`."""
    done, failed_before = _known_keys(store_path)
    todo, queued = [], set()
    for row in rows:
        if row.key in done:
            summary.skipped += 1
        elif row.key in failed_before and not retry_failed:
            summary.known_failures += 1
        elif row.key not in queued:  # a file listed under two ids is extracted once and stored under both
            queued.add(row.key)
            todo.append(row)
    log.info(
        "%d videos in manifest: %d already stored, %d to extract%s",
        len(rows),
        summary.skipped,
        len(todo),
        f", {summary.known_failures} known failures skipped" if summary.known_failures else "",
    )
    return todo


def _known_keys(store_path: Path) -> tuple[set[str], set[str]]:
    """Keys stored (or waiting in shards), and keys that failed for a reason of the file's own."""
    done, failed = store.shard_keys(store_path)
    if store_path.exists():
        stored, failed_before = store.stored_keys(store_path)
        done |= stored
        failed |= failed_before
    return done, failed - done


def _count_stored(summary: ExtractSummary, report: store.SyncReport, store_path: Path) -> None:
    """The counts of the summary line are the store's: rows stored, and rows failed, by this run.

    A manifest row in neither table is counted as such, never hidden in the others. The failure
    table's videos are named in `summary.failed_videos`.
    """
    failures = store.read_failures(store_path).itertuples() if store_path.exists() else ()
    summary.failed_videos = [f"{row.path} [{row.stage}]" for row in failures]
    summary.unaccounted = max(0, summary.total - report.stored - report.failed)
    summary.new = max(0, report.stored - summary.skipped)
    summary.failed = max(0, report.failed - summary.known_failures - summary.missing)


def _make_folder(option: str, folder: Path) -> None:
    """Create the folder an option names, or refuse naming the option (a file is in the way)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        raise InputError(f"{option}: {folder} is not a folder ({error.filename} is a file); pass a folder") from None
