"""The decoder pool: honest retries of deaths that may not be the file's fault, decoders that die with
their parent (kill -9), and Ctrl-C that stops a run within seconds, keeping finished work."""

import contextlib
import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pipeline import store
from pipeline.extract.decode import Sampling, decode_job
from pipeline.extract.decoder_pool import DecodeFailure, decode_all
from pipeline.extract.run import extract_features

import fault_hooks
from helpers import TINY_CONFIG as CONFIG
from helpers import manifest_of, tiny_backbone

TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def backbone():
    return tiny_backbone()


# `features` with the fault hooks in its decoders: the real command line, signals and exit codes
DRIVER = (
    "import functools, runpy, fault_hooks\n"
    "from pipeline.extract import run as extract\n"
    "extract.extract_features = functools.partial(extract.extract_features, decode_hook=fault_hooks.inject)\n"
    "runpy.run_module('pipeline', run_name='__main__')\n"
)


def test_sigkill_is_retried_in_a_new_process_and_reported_honestly_if_it_repeats(tmp_path, make_video, backbone):
    names = ["a.mp4", "oom-once.mp4", "b.mp4", "oom.mp4", "c.mp4"]
    manifest = manifest_of(tmp_path, make_video, names)
    summary = extract_features(
        manifest,
        tmp_path / "s.h5",
        backbone,
        CONFIG,
        workers=2,
        timeout=30,
        progress=False,
        decode_hook=fault_hooks.inject,
    )
    assert (tmp_path / "oom-once.killed").exists(), "the first decoder was not killed"
    assert (summary.new, summary.failed, summary.exit_code) == (4, 1, 1)
    stored = store.read_videos(tmp_path / "s.h5")["video_id"]
    assert sorted(stored) == sorted(str(tmp_path / n) for n in ("a.mp4", "oom-once.mp4", "b.mp4", "c.mp4"))
    failure = store.read_failures(tmp_path / "s.h5").set_index("video_id").loc[str(tmp_path / "oom.mp4")]
    assert failure["stage"] == "killed" and failure["error"] == "DecoderKilled"
    assert "killed by SIGKILL (out of memory?)" in failure["message"] and "corrupt" not in failure["message"]


def test_a_broken_pool_is_replaced_and_costs_no_video(tmp_path, make_video):
    """A decoder killed between videos breaks pebble's pool ("All workers expired"); the next videos still decode."""
    paths = [str(make_video(f"v{i}.mp4", seed=i)) for i in range(3)]
    sampling = Sampling.parse("uniform:2")

    def jobs():
        for number, path in enumerate(paths):
            if number == 1:  # the first video is done and no video is running: kill the idle decoder
                decoders = [
                    p for p in psutil.Process().children(recursive=True) if p.ppid() != os.getpid()
                ]  # the forkserver's children
                assert len(decoders) == 1
                decoders[0].kill()
                time.sleep(1)
            yield path, functools.partial(decode_job, path, 32, sampling, "center")

    outcomes = dict(decode_all(jobs(), workers=1, timeout=30, ahead=1))
    assert not [o for o in outcomes.values() if isinstance(o, DecodeFailure)], outcomes
    assert sorted(outcomes) == sorted(paths)


def features_process(tmp_path, csv, *options):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    command = [
        sys.executable,
        "-c",
        DRIVER,
        "features",
        "--manifest",
        str(csv),
        "--backbone",
        "vgg16",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--sampling",
        "uniform:4",
        "--precision",
        "float32",
        "--batch-size",
        "4",
        "--shard-size",
        "1",
        "--no-progress",
        "--out-dir",
        str(tmp_path / "features"),
        *options,
    ]
    with (
        open(tmp_path / "stdout", "w") as out,
        open(tmp_path / "stderr", "w") as err,
    ):  # files: a leftover decoder holds no pipe open
        return subprocess.Popen(command, stdout=out, stderr=err, env=env, preexec_fn=default_ctrl_c)


def default_ctrl_c() -> None:
    """In the child: Ctrl-C as in a terminal, even when pytest itself was started with it ignored (`pytest &` in a
    script).

    A command that inherits an ignored Ctrl-C keeps ignoring it, on purpose (`pipeline.__main__`).
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(path: Path, process, seconds=120):
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, path.parent.joinpath("stderr").read_text()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def gone(processes) -> bool:
    alive = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return not alive


def assert_gone_within(processes, seconds: float) -> None:
    """Every process ends (a zombie counts as ended) within `seconds`; survivors are killed either way."""
    deadline = time.time() + seconds
    while time.time() < deadline and not gone(processes):
        time.sleep(0.1)
    survivors = [p for p in processes if not gone([p])]
    for process in survivors:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
    assert not survivors, [p.pid for p in survivors]


def test_no_decoder_outlives_kill_9_of_its_parent(tmp_path):
    driver = (
        "import functools, sys, fault_hooks\n"
        "from pipeline.extract.decoder_pool import decode_all\n"
        "jobs = ((path, functools.partial(fault_hooks.inject, path)) for path in sys.argv[1:])\n"
        "for path, outcome in decode_all(jobs, workers=2, timeout=600, ahead=2):\n"
        "    print(path, outcome, flush=True)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS.parent), str(TESTS)])}
    with open(tmp_path / "stderr", "w") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", driver, str(tmp_path / "a.mp4"), str(tmp_path / "hang.mp4")],
            stdout=err,
            stderr=err,
            env=env,
        )
    wait_for(tmp_path / "hang.hanging", process)
    family = psutil.Process(process.pid).children(recursive=True)
    names = " ".join(" ".join(p.cmdline()) for p in family)
    assert "forkserver" in names and "resource_tracker" in names and len(family) >= 4, names  # both decoders too
    process.kill()
    process.wait()
    assert_gone_within(family, 5)


def test_a_second_ctrl_c_ends_the_command_at_once(tmp_path):
    """For a cleanup too slow for the user: the second Ctrl-C leaves without waiting for it."""
    driver = (
        "import os, signal, time\n"
        "from pipeline.__main__ import stop_on_second_interrupt\n"
        "stop_on_second_interrupt()\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)\n"
        "except KeyboardInterrupt:\n"
        "    print('cleaning up', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(60)  # a cleanup that hangs\n"
    )
    env = {**os.environ, "PYTHONPATH": str(TESTS.parent)}
    done = subprocess.run(
        [sys.executable, "-c", driver], capture_output=True, text=True, timeout=50, env=env, preexec_fn=default_ctrl_c
    )
    assert done.returncode == 130, done.stderr
    assert done.stdout == "cleaning up\n" and "second Ctrl-C: stopping now" in done.stderr


@pytest.mark.flaky(reruns=2)  # a 2-core machine at load 10 slows every step 5x: exits took 0.7-5.5 s there, ~1 s idle
@pytest.mark.slow
def test_ctrl_c_stops_within_seconds_and_keeps_finished_videos(tmp_path, make_video):
    manifest_of(tmp_path, make_video, ["a.mp4", "b.mp4", "hang1.mp4", "hang2.mp4", "c.mp4", "d.mp4"])
    process = features_process(tmp_path, tmp_path / "m.csv", "--workers", "2", "--timeout", "300")
    wait_for(tmp_path / "hang1.hanging", process)
    wait_for(tmp_path / "hang2.hanging", process)  # both decoders hang now
    deadline = time.time() + 120
    while len(list((tmp_path / "features").glob("m/*.parts/run-*/*.h5"))) < 2:  # a and b are embedded and written
        assert time.time() < deadline and process.poll() is None
        time.sleep(0.05)
    family = psutil.Process(process.pid).children(recursive=True)
    started = time.time()
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:  # still waiting for the hung decoders: leave nothing running
        process.kill()
        assert_gone_within(family, 5)
        raise
    err = (tmp_path / "stderr").read_text()
    assert time.time() - started < 10, err
    assert process.returncode == 130, err
    assert "interrupted" in err
    stores = list((tmp_path / "features").glob("m/*.h5"))
    assert len(stores) == 1, err
    assert sorted(store.read_videos(stores[0])["video_id"]) == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    assert_gone_within(family, 5)
