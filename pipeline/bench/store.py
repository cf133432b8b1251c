"""The feature store's part of `make bench`: its bookkeeping timed through its own write and merge path.

Run as `python -m pipeline.bench.parts store SCRATCH ROUNDS [SIZES]` (every part runs in its own process);
the rows are STORE_KEYS of bench.json (named by SIZES, the two store sizes, default STORE_VIDEOS).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from pipeline import store
from pipeline.core.atomic import replacing
from pipeline.core.errors import InputError
from pipeline.store import VIDEO_COLUMNS
from pipeline.store.tables import append_frames, read_table, write_table

STORE_VIDEOS, STORE_FRAMES, STORE_DIM, STORE_ADDED, BATCH = "1000,50000", 16, 1280, 10, 32
STORE_KEYS = (
    "store_add10_1k_s",
    "store_add10_50k_s",
    "store_noop_50k_s",
    "store_copy_merge_1k_s",
    "store_copy_merge_50k_s",
)


def part_store(scratch: str, rounds: str, sizes: str = STORE_VIDEOS) -> dict:
    """Store bookkeeping through the store's own write and merge path, in interleaved rounds.

    Two stores (1,000 and 50,000 videos of 16 x 1280 float16 synthetic frames, each built by one
    run) get 10 more videos per round; the same round times the copy-merge of schema version 1 (copy
    the whole store file, append, rename) on each store's frames. A no-op rerun of the 50,000-row
    manifest is timed as `features` does it: read and validate the manifest, key every file, read
    the store's keys, sync the metadata.
    """
    sizes = tuple(int(size) for size in sizes.split(","))
    if len(set(sizes)) != len(sizes) or any(size <= 0 or size % 1000 for size in sizes):
        raise InputError(f"store sizes {sizes}: distinct positive multiples of 1,000 (the rows are named by thousands)")
    largest = max(sizes)
    times = {f"store_{kind}_{size // 1000}k_s": [] for size in sizes for kind in ("add10", "copy_merge")}
    with tempfile.TemporaryDirectory(dir=scratch or None) as folder:
        built = {size: _bench_store(Path(folder) / f"s{size}", size) for size in sizes}
        for round_number in range(int(rounds)):
            for size, (path, manifest, rows) in built.items():
                new = _bench_rows(Path(folder) / f"s{size}", size + round_number * STORE_ADDED, STORE_ADDED)
                started = time.perf_counter()
                with store.shard_run(path) as run_dir:
                    store.write_shard(run_dir, _bench_shard(new), STORE_DIM, "float16")
                store.merge_shards(path, {"manifest": str(manifest)}, rows + new)
                times[f"store_add10_{size // 1000}k_s"].append(time.perf_counter() - started)
                rows += new
                segment = max(store.segments_dir(path).glob("*.h5"), key=lambda p: p.stat().st_size)
                times[f"store_copy_merge_{size // 1000}k_s"].append(_copy_merge(segment, _bench_shard(new)))
        path, manifest, rows = built[largest]
        _write_bench_manifest(manifest, rows)  # the added videos are in the manifest too
        _noop_run(path, manifest)  # the first run after the edit records the manifest's new hash
        times[f"store_noop_{largest // 1000}k_s"] = [_noop_run(path, manifest) for _ in range(int(rounds))]
    notes = {
        "add10": "10 videos into a store of {} videos (write the shard; merge: link it, sync, write the index)",
        "copy_merge": "schema-1 merge for comparison: copy the store of {} videos, append 10, rename",
        "noop": "no-op rerun of a {}-row manifest: read and validate it, key every file, sync",
    }
    return {
        name: {
            "seconds": float(np.median(runs)),
            "runs": runs,
            "note": f"median of {len(runs)}; "
            + notes[name[6:].rsplit("_", 2)[0]].format(f"{int(name.rsplit('_', 2)[1][:-1]) * 1000:,}"),
        }
        for name, runs in times.items()
    }


def _bench_rows(folder: Path, start: int, count: int) -> list:
    """Manifest rows of `count` videos, each a real (empty) file, so that keys are stat()ed as in a run."""
    paths = [folder / "videos" / f"v{i:06d}.mp4" for i in range(start, start + count)]
    paths[0].parent.mkdir(parents=True, exist_ok=True)
    for path in paths:
        path.touch()
    return [
        store.VideoRow(path.name, store.video_key(path), str(path), f"c{i % 10}", "train", "", start + n)
        for n, (i, path) in enumerate(zip(range(start, start + count), paths))
    ]


def _bench_shard(rows: list):
    rng = np.random.default_rng(0)
    shard = store.Shard()
    for row in rows:
        shard.add_video(
            row,
            rng.standard_normal((STORE_FRAMES, STORE_DIM)).astype(np.float16),
            np.arange(STORE_FRAMES),
            np.arange(STORE_FRAMES) / 25,
            250,
            25.0,
            320,
            240,
        )
    return shard


def _bench_store(folder: Path, size: int) -> tuple[Path, Path, list]:
    """A store of `size` videos built by one run (shards of 64, merged once), and its manifest."""
    rows = _bench_rows(folder, 0, size)
    manifest = (folder / "manifest.csv").resolve()
    _write_bench_manifest(manifest, rows)
    path = folder / "store.h5"
    with store.shard_run(path) as run_dir:
        for start in range(0, size, 64):
            store.write_shard(run_dir, _bench_shard(rows[start : start + 64]), STORE_DIM, "float16")
    store.merge_shards(path, {"manifest": str(manifest)}, rows)
    return path, manifest, rows


def _write_bench_manifest(manifest: Path, rows: list) -> None:
    pd.DataFrame(
        {
            "path": [row.path for row in rows],
            "label": [row.label for row in rows],
            "split": "train",
            "video_id": [row.video_id for row in rows],
        }
    ).to_csv(manifest, index=False)


def _copy_merge(store_file: Path, shard) -> float:
    """Schema version 1's merge, timed: copy the whole store, append the shard's frames and rows, fsync, rename."""

    done = store_file.with_name("copy-merge.h5.done")
    started = time.perf_counter()
    with replacing(done, store_file.with_name("copy-merge.h5.tmp"), fsync=True) as copy:
        shutil.copyfile(store_file, copy)
        with h5py.File(copy, "r+") as out:
            append_frames(
                out, np.concatenate(shard.features), np.concatenate(shard.frame_index), np.concatenate(shard.timestamps)
            )
            videos = read_table(out, "videos", VIDEO_COLUMNS)
            added = pd.DataFrame(shard.videos).assign(offset=0)[list(VIDEO_COLUMNS)]
            write_table(out, "videos", pd.concat([videos, added], ignore_index=True))
    seconds = time.perf_counter() - started
    done.unlink()
    return seconds


def _noop_run(path: Path, manifest: Path) -> float:
    """`features` on an unchanged manifest whose videos are all stored, minus loading the CNN."""
    from types import SimpleNamespace

    from pipeline.dataset.manifest import read_manifest
    from pipeline.extract.config import FeatureConfig
    from pipeline.extract.run import extract_features

    started = time.perf_counter()
    summary = extract_features(
        read_manifest(manifest),
        path,
        SimpleNamespace(dim=STORE_DIM, batch_size=BATCH, weights=None),
        FeatureConfig(),
        progress=False,
    )
    seconds = time.perf_counter() - started
    if summary.skipped != summary.total or summary.new:
        raise RuntimeError(f"the no-op run was not a no-op: {summary.line()}")
    return seconds
