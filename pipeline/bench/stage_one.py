"""Benchmarks of stage one (`make bench`): where the time goes, against a naive baseline.

Every measurement runs in its own subprocess, on the same real videos (../shared/data) and demo
clips, so that peak memory (ru_maxrss of the process and of its largest decoder child) belongs to
that measurement alone. Results go to a JSON file and a Markdown table:

  cnn_*      MobileNetV2 CNN-only frames/s on frames already in memory (the sampled frames of the same
             videos): the frozen TensorFlow graph, `--runtime auto`, and each installed CPU runtime;
             `*_avx2` the first two with oneDNN capped at AVX2, for a CPU without AVX-512
  decode_*   decode-only frames/s at the target size: `decode_auto` with the decoder processes of
             `features`, the others in one process (per read strategy)
  features   end-to-end `features` frames/s with `--runtime auto` (and with TensorFlow; on a dask LocalCluster)
  naive      per video: decode the sampled frames at full size, resize, model.predict, np.save
  memory     end-to-end peak memory for N and 10N videos
  vgg16_*    CNN-only frames/s of VGG16 in float32 on each runtime, and in bfloat16, with its relative error
  store_*    the feature store's bookkeeping: seconds to add 10 videos to a store of 1,000 and of
             50,000 videos, a no-op rerun of a 50,000-row manifest, and the copy-merge of schema
             version 1 on the same stores for comparison

`only` (`bench --only 'cnn_*,vgg16_*'`, shell-style patterns) runs just those rows: the CNN part alone in a few minutes,
`store_*` the store part alone. The output then holds only what that run measured.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

from pipeline.bench.store import STORE_KEYS, STORE_VIDEOS
from pipeline.core.errors import InputError

SIZE, SAMPLING, BATCH = 224, "uniform:16", 32
TARGET_PARTS = (
    "cnn_tensorflow",
    "cnn_auto",
    "cnn_tensorflow_avx2",
    "cnn_auto_avx2",
    "decode_auto",
    "features",
    "naive",
)  # the parts of the speed targets: median of REPEATS rounds
REPEATS = 3


def run_all(
    videos: list[str],
    demo_manifest: str,
    weights: str,
    output: Path,
    only: tuple[str, ...] = (),
    store_sizes: str = STORE_VIDEOS,
) -> dict:
    """Run every measurement (or those whose names match a pattern of `only`) in a subprocess; write `output` (JSON)
    and return the results.

    `store_sizes`: the store sizes of the store rows, distinct multiples of 1,000 (smaller ones make a quick check of
    the part).
    """
    from pipeline.extract.runtimes import CPU_PREFERENCE, missing_modules

    results = {}
    if not only or _selected(STORE_KEYS, only):
        store_rows = _run_part("store", [os.environ.get("BENCH_SCRATCH", ""), str(REPEATS), store_sizes])
        results.update({name: row for name, row in store_rows.items() if name.startswith("store_")})  # not its peak_mb
        if store_only(only):
            return _write_results(results, output)
    installed = [name for name in CPU_PREFERENCE if not missing_modules(name)]
    with tempfile.TemporaryDirectory() as scratch:
        manifest = Path(scratch) / "bench.csv"
        demo = pd.read_csv(demo_manifest)
        demo_paths = [str((Path(demo_manifest).parent / p).resolve()) for p in demo["path"]]
        small = videos + demo_paths[:30]
        pd.DataFrame({"path": small, "label": "x"}).to_csv(manifest, index=False)
        tenfold = Path(scratch) / "tenfold.csv"
        pd.DataFrame({"path": demo_paths[:300], "label": "x"}).to_csv(tenfold, index=False)
        tenth = Path(scratch) / "tenth.csv"
        pd.DataFrame({"path": demo_paths[:30], "label": "x"}).to_csv(tenth, index=False)
        jobs = {
            "cnn_tensorflow": ["cnn", str(manifest), weights, "auto", "tensorflow"],
            "cnn_auto": ["cnn", str(manifest), weights, "auto", "auto"],
            **{f"cnn_{name}": ["cnn", str(manifest), weights, "auto", name] for name in installed},
            # oneDNN's kernels capped at AVX2: the convolutions of TensorFlow and OpenVINO (not ONNX Runtime's)
            **{
                f"cnn_{name}_avx2": ["cnn_capped", "AVX2", str(manifest), weights, name]
                for name in ("tensorflow", "auto")
            },
            "decode_auto": ["decode", str(manifest), "auto", "pool"],
            "decode_one_process": ["decode", str(manifest), "auto", "one"],
            "decode_seek": ["decode", str(manifest), "seek", "one"],
            "decode_sequential": ["decode", str(manifest), "sequential", "one"],
            "features": ["features", str(manifest), weights, scratch, "", "auto"],
            "features_tensorflow": ["features", str(manifest), weights, scratch, "", "tensorflow"],
            "features_dask_local": ["features", str(manifest), weights, scratch, "local", "auto"],
            "naive": ["naive", str(manifest), weights, scratch],
            "memory_30_videos": ["features", str(tenth), weights, scratch, "", "auto"],
            "memory_300_videos": ["features", str(tenfold), weights, scratch, "", "auto"],
            **{f"vgg16_{name}": ["cnn_vgg16", str(manifest), "float32", name] for name in ("tensorflow", *installed)},
            "vgg16_bfloat16": ["cnn_vgg16", str(manifest), "bfloat16", "tensorflow"],
        }
        if only:
            selected = {name: job for name, job in jobs.items() if _selected((name,), only)}
            if not selected and not results:
                raise InputError(f"--only {','.join(only)} matches no row; the rows: {', '.join([*STORE_KEYS, *jobs])}")
            jobs = selected
        # the target parts in interleaved rounds, so that a slower spell of a shared machine hits them alike
        order = [name for _ in range(REPEATS) for name in TARGET_PARTS if name in jobs] + [
            name for name in jobs if name not in TARGET_PARTS
        ]
        runs = {name: [] for name in jobs}
        for name in order:
            print(f"bench: {name} (run {len(runs[name]) + 1}) ...", file=sys.stderr, flush=True)
            done = subprocess.run(
                [sys.executable, "-m", "pipeline.bench.parts", *jobs[name]], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise RuntimeError(f"bench part {name} failed:\n{done.stderr[-3000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
        results.update({name: _median_run(part_runs) for name, part_runs in runs.items()})
    results["targets"] = _targets(results)
    results["setup"] = {
        "videos": len(small),
        "image_size": SIZE,
        "sampling": SAMPLING,
        "batch_size": BATCH,
        "weights": weights,
        "cpu_count": os.cpu_count(),
        "runtimes_installed": installed,
    }
    return _write_results(results, output)


def _write_results(results: dict, output: Path) -> dict:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=1))
    return results


def store_only(only: tuple[str, ...]) -> bool:
    """Whether the patterns of `only` select the store part alone (it needs no videos): all of them name store rows."""
    return bool(only) and all(pattern.startswith("store_") for pattern in only)


def _selected(names, only: tuple[str, ...]) -> bool:
    """Whether any of `names` matches a shell-style pattern of `only`."""
    return any(fnmatch.fnmatchcase(name, pattern) for name in names for pattern in only)


def _run_part(name: str, args: list[str]) -> dict:
    print(f"bench: {name} ...", file=sys.stderr, flush=True)
    done = subprocess.run([sys.executable, "-m", "pipeline.bench.parts", name, *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench part {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _targets(results: dict) -> dict:
    """The ratios of the speed targets, for the rows that were measured."""
    rate = {name: part["frames_per_s"] for name, part in results.items() if "frames_per_s" in part}
    ratios = {
        "cnn_auto_over_tensorflow": ("cnn_auto", "cnn_tensorflow"),
        "cnn_auto_over_tensorflow_avx2": ("cnn_auto_avx2", "cnn_tensorflow_avx2"),
        "features_over_naive": ("features", "naive"),
        "features_auto_over_tensorflow": ("features", "features_tensorflow"),
        "vgg16_bfloat16_speedup": ("vgg16_bfloat16", "vgg16_tensorflow"),
        **{
            f"vgg16_{name[6:]}_speedup": (name, "vgg16_tensorflow")
            for name in rate
            if name.startswith("vgg16_") and name[6:] not in ("tensorflow", "bfloat16")
        },
    }
    targets = {name: rate[a] / rate[b] for name, (a, b) in ratios.items() if a in rate and b in rate}
    if "cnn_auto" in rate and "decode_auto" in rate:
        targets["ceiling_frames_per_s"] = 1 / (1 / rate["cnn_auto"] + 1 / rate["decode_auto"])
        if "features" in rate:
            targets["features_over_ceiling"] = rate["features"] / targets["ceiling_frames_per_s"]
    if "memory_300_videos" in results and "memory_30_videos" in results:
        targets["memory_300_over_30"] = results["memory_300_videos"]["peak_mb"] / results["memory_30_videos"]["peak_mb"]
    return targets


def _median_run(runs: list[dict]) -> dict:
    """The run with the median frames/s, keeping every run's rate: one run on a shared machine can be off by 10%."""
    ordered = sorted(runs, key=lambda run: run["frames_per_s"])
    median = dict(ordered[len(ordered) // 2])
    if len(runs) > 1:
        rates = [run["frames_per_s"] for run in runs]
        median["runs_frames_per_s"] = rates
        median["note"] = f"median of {len(runs)} runs ({min(rates):.1f}-{max(rates):.1f}); " + median.get("note", "")
    return median


def table(results: dict) -> str:
    """The Markdown tables of the README."""
    rows = store_table(results)
    frame_rows = [
        f"| {name} | {part['frames_per_s']:.1f} | {part['peak_mb']:.0f} | {part.get('note', '')} |"
        for name, part in results.items()
        if "frames_per_s" in part
    ]
    if frame_rows:
        rows += ["", "| measurement | frames/s | peak memory (MB) | note |", "| --- | ---: | ---: | --- |", *frame_rows]
    if results.get("targets"):
        rows += ["", "; ".join(f"{name} = {value:.2f}" for name, value in results["targets"].items())]
    return "\n".join(rows)


def store_table(results: dict) -> list[str]:
    if not any(name.startswith("store_") for name in results):
        return []
    rows = ["| store measurement | seconds | runs | note |", "| --- | ---: | --- | --- |"]
    for name, part in results.items():
        if name.startswith("store_"):
            rows.append(
                f"| {name} | {part['seconds']:.3f} | {', '.join(f'{x:.3f}' for x in part['runs'])} | {part['note']} |"
            )
    if {"store_add10_50k_s", "store_add10_1k_s", "store_noop_50k_s"} <= set(results):
        ratio = results["store_add10_50k_s"]["seconds"] / results["store_add10_1k_s"]["seconds"]
        rows += [
            "",
            f"add 10 videos at 50,000 / at 1,000 = {ratio:.2f} (target <= 2); no-op sync of 50,000 rows "
            f"{results['store_noop_50k_s']['seconds']:.1f}s (target <= 10)",
        ]
    return rows


# --- the parts, each run in its own process --------------------------------------------------
