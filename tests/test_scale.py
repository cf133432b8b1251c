"""Stage one at scale: decoder isolation (hang, crash) and dask.distributed runs."""

import os
import signal
import threading
import time

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline import store
from pipeline.extract.backbones import Weights
from pipeline.extract.run import extract_features

import fault_hooks
from helpers import TINY_CONFIG, manifest_of, tiny_backbone

CONFIG = TINY_CONFIG


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


def test_hang_and_crash_cost_only_their_video(tmp_path, make_video, backbone):
    names = ["a.mp4", "hang.mp4", "b.mp4", "crash.mp4", "c.mp4", "d.mp4"]
    manifest = manifest_of(tmp_path, make_video, names)
    started = time.perf_counter()
    summary = extract_features(
        manifest,
        tmp_path / "s.h5",
        backbone,
        CONFIG,
        workers=2,
        timeout=10,  # a crash's retry starts a new decoder at nice 19: it took over 5 s beside the CNN on 2 cores
        progress=False,
        decode_hook=fault_hooks.inject,
    )
    assert time.perf_counter() - started < 60
    assert (summary.new, summary.failed, summary.exit_code) == (4, 2, 1)
    failures = store.read_failures(tmp_path / "s.h5").set_index("video_id")
    hang, crash = failures.loc[str(tmp_path / "hang.mp4")], failures.loc[str(tmp_path / "crash.mp4")]
    assert hang["stage"] == "timeout" and "longer than 10s" in hang["message"]
    assert crash["stage"] == "crash" and "SIGSEGV" in crash["message"]
    assert sorted(store.read_videos(tmp_path / "s.h5")["video_id"]) == sorted(
        str(tmp_path / n) for n in ("a.mp4", "b.mp4", "c.mp4", "d.mp4")
    )


def test_decoders_run_at_the_lowest_cpu_priority_without_core_dumps(tmp_path, make_video, backbone):
    manifest = manifest_of(tmp_path, make_video, ["a.mp4", "b.mp4", "c.mp4"])
    before = os.getpriority(os.PRIO_PROCESS, 0)
    summary = extract_features(
        manifest,
        tmp_path / "s.h5",
        backbone,
        CONFIG,
        workers=2,
        progress=False,
        decode_hook=fault_hooks.require_decoder_limits,
    )
    assert (summary.new, summary.failed) == (3, 0), store.read_failures(tmp_path / "s.h5")["message"].tolist()
    assert os.getpriority(os.PRIO_PROCESS, 0) == before  # this process, where the CNN runs, keeps its priority


@pytest.mark.slow
@pytest.mark.flaky(
    reruns=1
)  # once in ~4 full runs: the in-process merge's failures.csv read met an HDF5 lock (errno 11)
def test_local_cluster_store_equals_in_process_store(tmp_path, make_video, backbone):
    manifest = manifest_of(tmp_path, make_video, [f"v{i}.mp4" for i in range(10)] + ["crash.mp4"])
    local = extract_features(
        manifest, tmp_path / "local.h5", backbone, CONFIG, progress=False, decode_hook=fault_hooks.inject
    )
    cluster = extract_features(
        manifest,
        tmp_path / "cluster.h5",
        backbone,
        CONFIG,
        weights=Weights("none"),
        scheduler="local",
        dask_workers=2,
        shard_size=3,
        progress=False,
        decode_hook=fault_hooks.inject,
    )
    assert (cluster.new, cluster.failed) == (local.new, local.failed) == (10, 1)
    assert (
        cluster.runtime == store.read_attrs(tmp_path / "cluster.h5")["runtime"] == "tensorflow"
    )  # what the workers ran
    pd.testing.assert_frame_equal(store.read_videos(tmp_path / "local.h5"), store.read_videos(tmp_path / "cluster.h5"))
    pd.testing.assert_frame_equal(
        store.read_failures(tmp_path / "local.h5"), store.read_failures(tmp_path / "cluster.h5")
    )
    with h5py.File(tmp_path / "local.h5", "r") as a, h5py.File(tmp_path / "cluster.h5", "r") as b:
        np.testing.assert_allclose(
            a["features"][:].astype(np.float32), b["features"][:].astype(np.float32), rtol=2e-3, atol=1e-3
        )


@pytest.mark.slow
def test_worker_killed_mid_run_then_rerun_completes(tmp_path, make_video, backbone):
    import dask
    from dask.distributed import Client, LocalCluster

    manifest = manifest_of(tmp_path, make_video, [f"v{i:02d}.mp4" for i in range(16)])
    path = tmp_path / "s.h5"
    with (
        dask.config.set({"distributed.worker.daemon": False}),
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
    ):
        with Client(cluster) as client:
            pids = list(client.run(os.getpid).values())
            result = {}
            run = threading.Thread(
                target=lambda: result.update(
                    summary=extract_features(
                        manifest,
                        path,
                        backbone,
                        CONFIG,
                        weights=Weights("none"),
                        scheduler=cluster.scheduler_address,
                        shard_size=2,
                        progress=False,
                    )
                )
            )
            run.start()
            deadline = time.time() + 120
            while time.time() < deadline and not list(store.parts_dir(path).glob("run-*/*.h5")):
                time.sleep(0.05)
            os.kill(pids[0], signal.SIGKILL)
            run.join(timeout=300)
    assert "summary" in result, "the run did not come back after a worker died"
    rerun = extract_features(manifest, path, backbone, CONFIG, progress=False)
    assert rerun.exit_code == 0 and rerun.new + result["summary"].new == 16
    videos = store.read_videos(path)
    assert len(videos) == 16 and videos["video_id"].is_unique
    assert sorted(videos["video_id"]) == sorted(manifest["video_id"])


@pytest.mark.slow
def test_a_video_that_kills_its_worker_is_retried_alone_then_recorded_as_lost(tmp_path, make_video, backbone):
    import dask
    from dask.distributed import LocalCluster

    names = ["a.mp4", "oom.mp4", "b.mp4", "c.mp4"]
    manifest = manifest_of(tmp_path, make_video, names)
    path = tmp_path / "s.h5"
    with (
        dask.config.set({"distributed.worker.daemon": False, "distributed.scheduler.allowed-failures": 0}),
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
    ):
        summary = extract_features(
            manifest,
            path,
            backbone,
            CONFIG,
            weights=Weights("none"),
            scheduler=cluster.scheduler_address,
            shard_size=2,
            progress=False,
            decode_hook=fault_hooks.kill_dask_worker,
        )
    assert (summary.new, summary.failed, summary.exit_code) == (3, 1, 1)  # its shard-mates were retried and stored
    failure = store.read_failures(path).set_index("video_id").loc[str(tmp_path / "oom.mp4")]
    assert failure["stage"] == "lost" and "killed by SIGKILL: out of memory?" in failure["message"]
    assert "corrupt" not in failure["message"]
    rerun = extract_features(
        manifest, path, backbone, CONFIG, progress=False
    )  # not the file's fault: retried, not skipped
    assert (rerun.new, rerun.known_failures, rerun.exit_code) == (1, 0, 0)
    assert store.read_failures(path).empty and len(store.read_videos(path)) == 4
