"""Hostile options and environments: out-of-range numbers, dask addresses that never answer, huge image sizes,
read-only folders and full disks. Each is refused in one line naming the option or path (exit 2), before any work.

Mostly in-process `main([...])` calls (no new TensorFlow import per test); subprocesses where a hang or a crash of
the process is what is tested. Read-only folders are real: a read-only bind mount as root (root ignores permission
bits), `chattr +i` where mounting is not allowed, `chmod 555` for other users; a full disk is a small tmpfs (root).
"""

import argparse
import contextlib
import http.server
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.classify.config import TrainConfig, check_batch_memory
from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.sequences import SEQ_LEN, SequenceConfig
from pipeline.cli import build_parser, main
from pipeline.cli.common import EXIT_BAD_INPUT
from pipeline.core.config import Bound
from pipeline.core.errors import InputError
from pipeline.extract.cluster import check_scheduler, dask_client
from pipeline.extract.config import CORES, MAX_FRAMES, WORKERS, FeatureConfig
from pipeline.nextframe.config import ConvLSTMConfig

from helpers import TINY_CONFIG, gradient_clip, manifest_csv

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--sampling", "uniform:4"]
TINY += ["--precision", "float32", "--runtime", "tensorflow", "--no-progress"]
# predict's own options, left to the engineer who owns predict: not bounded here yet
NOT_BOUNDED = {("predict", "--window"), ("predict", "--stride"), ("predict", "--smooth"), ("predict", "--top-k")}


def numeric_options():
    """(command words, option, bound or None, its action) for every int/float option of every command."""
    found = []

    def walk(parser, words):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*words, name])
            elif action.option_strings and (action.type in (int, float) or hasattr(action.type, "bound")):
                found.append((words, action.option_strings[-1], getattr(action.type, "bound", None), action))

    walk(build_parser(), [])
    return found


def refused(capsys, argv) -> str:
    """The one-line argparse refusal of `argv` (exit 2), as printed."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == EXIT_BAD_INPUT
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_every_numeric_option_of_every_command_has_a_range_and_refuses_what_is_outside(capsys):
    options = numeric_options()
    assert len(options) > 40  # features, compact, train, convlstm, temporal-bench, demo-data, predict...
    unbounded = {(words[0], flag) for words, flag, bound, action in options if bound is None and not action.choices}
    assert unbounded == NOT_BOUNDED
    for words, flag, bound, action in options:
        if bound is None:
            continue
        low = bound.low - (1 if bound.kind is int else 0.5 * max(bound.low, 1e-3))
        bad = [f"{bound.high * 2 + 1:g}" if bound.kind is float else str(int(bound.high) + 1), "nan", "inf", "x"]
        bad += [str(int(low)) if bound.kind is int else f"{low:g}"] if not bound.low_open else [f"{bound.low:g}"]
        bad += ["1.5"] if bound.kind is int else []
        bad += ["9" * 5000]  # more digits than Python prints
        for value in bad:
            line = refused(capsys, [*words, flag, value])
            assert f"argument {flag}" in line and bound.describe() in line, (words, flag, value, line)
        assert f"{bound.describe()}" in action.help  # --help says the range
        if action.default is not None:  # the default itself is valid
            assert not bound.problem(action.default), (words, flag)


def test_process_counts_are_bounded_by_this_machines_cores(capsys):
    """--dask-workers 256 started 256 TensorFlow processes on a 2-core machine; decoders beyond 4 per core only
    hold more decoded frames."""
    for flag, most in (("--workers", 4 * CORES), ("--dask-workers", CORES)):
        line = refused(capsys, ["features", "--manifest", "m.csv", flag, str(most + 1)])
        assert f"argument {flag}: {most + 1} is out of range: give a whole number from 1 to {most} processes" in line
    assert WORKERS.problem(CORES) == ""  # the default, one decoder per core, is always valid


def test_an_option_given_twice_is_checked_each_time(capsys):
    for values in (("0", "2"), ("2", "0")):
        line = refused(capsys, ["features", "--manifest", "m.csv", "--workers", values[0], "--workers", values[1]])
        assert f"argument --workers: 0 is out of range: give {WORKERS.describe()}" in line


@pytest.mark.timeout(60)
@pytest.mark.parametrize("command", ["features", "predict"])
def test_workers_zero_or_negative_exits_2_at_once_instead_of_hanging(tmp_path, command):
    """It hung until killed (90-120 s where a run takes 3 s): a decoder pool of no process never runs a job."""
    clip = tmp_path / "v.mp4"
    args = {"features": ["features", "--manifest", str(tmp_path / "m.csv")], "predict": ["predict", "run", str(clip)]}
    for workers in ("0", "-1"):
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", *args[command], "--workers", workers],
            capture_output=True,
            text=True,
            timeout=50,
            cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == EXIT_BAD_INPUT and time.monotonic() - started < 30
        assert f"argument --workers: {workers} is out of range: give {WORKERS.describe()}" in done.stderr


@pytest.mark.timeout(60)
def test_the_python_api_refuses_the_same_values_before_any_work(tmp_path):
    from pipeline.extract.decoder_pool import decode_all
    from pipeline.extract.run import extract_manifest

    manifest = manifest_csv(tmp_path / "m.csv", [(str(tmp_path / "missing.mp4"), "a")])  # never read
    for options, message in (
        ({"workers": 0}, "workers 0 is out of range"),
        ({"workers": -1}, "workers -1 is out of range"),
        ({"batch_size": 0}, "batch size 0 is out of range"),
        ({"timeout": 0}, "timeout 0 is out of range"),
        ({"timeout": -5.0}, "timeout -5.0 is out of range"),
        ({"timeout": math.inf}, "timeout inf is not a finite number"),
        ({"shard_size": 0}, "shard size 0 is out of range"),
        ({"lock_timeout": math.nan}, "lock timeout nan is not a finite number"),
        ({"dask_workers": 0}, "dask workers 0 is out of range"),
        ({"scheduler_timeout": 0}, "scheduler timeout 0 is out of range"),
    ):
        with pytest.raises(InputError, match=message):
            extract_manifest(manifest, TINY_CONFIG, **options)
    with pytest.raises(InputError, match="workers 0 is out of range"):
        next(decode_all(iter([]), workers=0, timeout=1.0, ahead=1))  # predict's and dask tasks' decoding too
    with pytest.raises(InputError, match="timeout 0 is out of range"):
        next(decode_all(iter([]), workers=1, timeout=0, ahead=1))


def test_bounds_refuse_nan_inf_bools_strings_fractions_and_huge_integers():
    whole = Bound(1, 256, unit="processes")
    share = Bound(0, 0.5, float, low_open=True)
    assert whole.describe() == "a whole number from 1 to 256 processes"
    assert share.describe() == "a number > 0 and <= 0.5"
    assert Bound(0, 1, float, high_open=True).describe() == "a number >= 0 and < 1"
    assert [whole.problem(v) for v in (1, 256, np.int64(3))] == ["", "", ""]
    assert whole.problem(0) == whole.problem(257) == whole.problem(10**5000) == "is out of range"
    assert whole.problem(2.0) == whole.problem(math.nan) == "is not a whole number"
    assert whole.problem(True) == "is not a number (bool)" and whole.problem("3") == "is not a number (str)"
    assert share.problem(0) == share.problem(0.6) == "is out of range" and share.problem(0.5) == ""
    assert share.problem(math.nan) == share.problem(-math.inf) == "is not a finite number"
    with pytest.raises(InputError, match=r"workers \(a number of 5001 digits\) is out of range"):
        whole.check("workers", 10**5000)  # repr() of it would raise ValueError itself


def test_train_options_that_trained_silently_are_refused(capsys):
    """--test-size 1.5, 0 or -0.2 trained with an empty test split (exit 0), --learning-rate -1 trained, and
    --batch-size 0 failed deep in numpy ('need at least one array to concatenate')."""
    base = ["train", "--store", "s.h5"]
    for flag, value, valid in (
        ("--test-size", "1.5", "a number > 0 and <= 0.5"),
        ("--test-size", "0", "a number > 0 and <= 0.5"),
        ("--test-size", "-0.2", "a number > 0 and <= 0.5"),
        ("--val-size", "0.7", "a number from 0 to 0.5"),
        ("--learning-rate", "-1", "a number > 0 and <= 1"),
        ("--batch-size", "0", "a whole number from 1 to 4096 videos"),
        ("--seed", "-1", "a whole number from 0 to 4294967295"),
        ("--dropout", "1", "a number >= 0 and < 1"),
        ("--seq-len", "0", "a whole number from 1 to 10000 steps"),
    ):
        line = refused(capsys, [*base, flag, value])
        assert f"argument {flag}: {value} is out of range: give {valid}" in line
    for flag, value in (("--timeout", "0"), ("--timeout", "-3"), ("--batch-size", "0"), ("--shard-size", "0")):
        line = refused(capsys, ["features", "--manifest", "m.csv", flag, value])
        assert f"argument {flag}: {value} is out of range" in line
    line = refused(capsys, ["predict", "run", "v.mp4", "--timeout", "0"])
    assert "argument --timeout: 0 is out of range: give a number > 0 and <= 86400 seconds" in line
    # and the dataclasses refuse them alike (the Python API, a config read from a run)
    for bad in ({"test_size": 1.5}, {"test_size": 0}, {"learning_rate": -1.0}, {"batch_size": 0}, {"seed": -1}):
        with pytest.raises(InputError, match=f"{next(iter(bad)).replace('_', ' ')} .* is out of range"):
            TrainConfig(**bad)
    for bad in ({"units": 0}, {"layers": 17}, {"dropout": 1.0}, {"cell_units": -1}):
        with pytest.raises(InputError, match="is out of range"):
            SequenceModelConfig(**bad)
    for bad in ({"examples": -1}, {"batch_size": 0}, {"learning_rate": 0.0}, {"sequences": 10**6}, {"seed": -2}):
        with pytest.raises(InputError, match="is out of range"):
            ConvLSTMConfig(**bad)
    assert TrainConfig(val_size=0).val_size == 0  # no validation split stays allowed


def test_image_size_max_frames_and_sampling_are_bounded_in_the_feature_config(capsys):
    """--image-size 5000 was an out-of-memory kill (exit 137), 20000 a segfault in TensorFlow's graph optimiser."""
    for size in ("5000", "20000", "31"):
        line = refused(capsys, ["features", "--manifest", "m.csv", "--image-size", size])
        assert f"argument --image-size: {size} is out of range: give a whole number from 32 to 1024 pixels" in line
    for kwargs, message in (
        ({"image_size": 5000}, "image size 5000 is out of range"),
        ({"image_size": "224"}, "image size '224' is not a number"),
        ({"image_size": 224.0}, "image size 224.0 is not a whole number"),
        ({"max_frames": 0}, "max frames 0 is out of range"),
        ({"max_frames": MAX_FRAMES + 1}, "max frames 10001 is out of range"),
        ({"sampling": "all", "max_frames": 10_000}, "1.4 GiB of decoded frames per video .* --max-frames to 7133"),
        ({"sampling": "fps:1.2.3"}, "is not one of uniform:K"),  # was float()'s ValueError: exit 3
        ({"sampling": "uniform:" + "9" * 400}, "too large"),  # was OverflowError
        ({"sampling": "uniform:10001"}, "uniform takes at most 10000"),  # numpy would list 10**8 indices first
        ({"sampling": "fps:1001"}, "fps takes at most 1000"),
        ({"sampling": 16}, "is not one of uniform:K"),  # a hand-edited config: was AttributeError
    ):
        with pytest.raises(InputError, match=message):
            FeatureConfig(**kwargs)
    assert FeatureConfig(image_size=1024, sampling="uniform:16").image_size == 1024
    assert SEQ_LEN.high == MAX_FRAMES  # a sequence never has more steps than stage one stores frames
    with pytest.raises(InputError, match="seq len 10001 is out of range"):
        SequenceConfig(10_001)  # a run's sequence config, as predict reads it


@pytest.mark.timeout(120)
def test_a_cnn_batch_larger_than_memory_is_refused_before_the_network_runs():
    import psutil

    from pipeline.extract.backbones import Weights, load_backbone

    started = time.monotonic()
    with pytest.raises(InputError) as refusal:  # about 1 TiB: more than any machine this runs on
        load_backbone("vgg16", Weights("none"), 1024, batch_size=1024, precision="float32")
    total = psutil.virtual_memory().total / 2**30
    fits = int(total // 1)  # vgg16 at 1024 px: 4 x 64 x 1024 x 1024 float32 = 1 GiB per frame
    assert str(refusal.value) == (
        f"vgg16 at 1024 px needs about 1024.0 GiB for a batch of 1024 frames, more than this machine's {total:.1f} "
        f"GiB of memory: lower --batch-size to {fits} or --image-size"
    )
    assert time.monotonic() - started < 60
    with pytest.raises(InputError, match="batch size 0 is out of range"):
        load_backbone("vgg16", Weights("none"), 32, batch_size=0)
    with pytest.raises(InputError, match=r"--batch-size 4096 of 10000 steps x 100000 features needs about .* GiB"):
        check_batch_memory(TrainConfig(batch_size=4096), 10_000, 100_000)
    check_batch_memory(TrainConfig(), 8, 6)  # a small batch passes


# --- dask scheduler addresses ----------------------------------------------------------------


@contextlib.contextmanager
def silent_listener():
    """A socket that accepts connections and never answers: dask's Client waited forever on it."""
    server = socket.create_server(("127.0.0.1", 0))
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for connection in [*held, server]:
            connection.close()


@contextlib.contextmanager
def http_server():
    """An HTTP server on the address: it waits for a request dask never sends; dask waited for its reply."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def refused_port():
    """A port nothing listens on (bound, then closed): dask gave up after 30 s with exit 3."""
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    yield f"tcp://127.0.0.1:{port}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "server, expected",
    [
        (silent_listener, "did not answer within 2s (--scheduler-timeout)"),
        (http_server, "did not answer"),  # within the timeout, or with bytes that are no dask message
        (refused_port, "cannot be reached (Connection refused)"),
    ],
)
def test_a_scheduler_address_that_never_answers_is_refused_in_the_timeout(
    tmp_path, monkeypatch, caplog, server, expected
):
    monkeypatch.chdir(tmp_path)
    manifest = manifest_csv(tmp_path / "m.csv", [(str(tmp_path / "never-read.mp4"), "a")])
    with server() as address:
        started = time.monotonic()
        code = main(["features", "--manifest", str(manifest), "--scheduler", address, "--scheduler-timeout", "2"])
        seconds = time.monotonic() - started
    assert code == EXIT_BAD_INPUT and seconds < 10
    assert f"--scheduler {address}: {expected}" in caplog.text and "; check the address (tcp://" in caplog.text
    assert not (tmp_path / "features").exists()  # refused before any work: no store, no folder


@pytest.mark.timeout(60)
def test_malformed_addresses_are_refused_and_a_real_scheduler_passes():
    from dask.distributed import LocalCluster

    for address, message in (
        ("foo", "not a scheduler address .*missing port number"),
        ("tcp://host:port", "not a scheduler address"),
        ("tcp://[::1]:0", "cannot be reached"),
        ("tcp://no-such-host.invalid:8786", "cannot be reached"),
    ):
        with pytest.raises(InputError, match=message):
            check_scheduler(address, 2)
    check_scheduler(None, 2), check_scheduler("local", 2)  # nothing to ask
    with LocalCluster(n_workers=1, processes=False, protocol="tcp://", dashboard_address=None) as cluster:
        check_scheduler(cluster.scheduler_address, 5)
        with dask_client(cluster.scheduler_address, timeout=5.0) as client:
            assert client.scheduler_info()["address"] == cluster.scheduler_address
        worker = next(iter(cluster.scheduler_info["workers"]))
        with pytest.raises(InputError, match=f"--scheduler {worker}: answers as a dask Worker, not a scheduler"):
            check_scheduler(worker, 5)
    with LocalCluster(n_workers=0, processes=False, protocol="tcp://", dashboard_address=None) as empty:
        started = time.monotonic()  # it answers, but would take the tasks and never run them
        with pytest.raises(InputError, match="the scheduler has no workers .*within 2s"):
            with dask_client(empty.scheduler_address, timeout=2.0):
                pass
        assert time.monotonic() - started < 10


# --- read-only folders and full disks --------------------------------------------------------


def _ok(*command) -> bool:
    return subprocess.run(command, capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` made read-only for real; yields how. Root ignores permission bits, so as root a read-only bind
    mount (EROFS), or `chattr +i` (EPERM) where mounting is not allowed; any other user gets chmod 555 (EACCES)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield "chmod"
        finally:
            folder.chmod(0o755)
    elif _ok("mount", "--bind", folder, folder):
        try:
            assert _ok("mount", "-o", "remount,bind,ro", folder)
            yield "mount"
        finally:
            assert _ok("umount", folder) or _ok("umount", "-l", folder)
    elif _ok("chattr", "+i", folder):
        try:
            yield "chattr"
        finally:
            _ok("chattr", "-i", folder)
    else:
        pytest.skip("no way to make a folder read-only here (root without mount or chattr)")


@contextlib.contextmanager
def full_disk(folder: Path, size: str = "64k"):
    """`folder` on a tmpfs of `size`: a disk that fills at once (root only)."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not _ok("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", folder):
        pytest.skip("a full disk needs a tmpfs mount (root)")
    try:
        yield folder
    finally:
        assert _ok("umount", folder) or _ok("umount", "-l", folder)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A real store of 8 tiny clips (random VGG16 at 32 px) and a GRU run trained on it for 2 epochs."""
    from pipeline.dataset.demo import write_clip

    root = tmp_path_factory.mktemp("tiny-run")
    rows = []
    for i in range(8):
        write_clip(root / f"v{i}.mp4", gradient_clip(12, 64, 48, i), fps=10, codec="libx264", options={})
        rows.append((str(root / f"v{i}.mp4"), f"c{i % 2}"))
    manifest = manifest_csv(root / "m.csv", rows)
    assert main(["features", "--manifest", str(manifest), *TINY, "--store", str(root / "s.h5")]) == 0
    run = ["train", "--store", str(root / "s.h5"), "--run", str(root / "run"), "--epochs", "2", "--no-progress"]
    assert main(run) == 0
    return root


@pytest.mark.timeout(300)
def test_a_read_only_out_dir_run_folder_or_predictions_folder_exits_2_naming_the_path(tiny_run, tmp_path, caplog):
    """Each was exit 3 'unexpected error ... report it'."""
    with read_only(tmp_path / "ro") as how:
        manifest = str(tiny_run / "m.csv")
        assert main(["features", "--manifest", manifest, *TINY, "--out-dir", str(tmp_path / "ro" / "f")]) == 2
        assert f"features: {tmp_path / 'ro' / 'f'}: " in caplog.text and "(--out-dir or --store)" in caplog.text
        caplog.clear()
        run = ["train", "--store", str(tiny_run / "s.h5"), "--epochs", "1", "--no-progress"]
        assert main([*run, "--run", str(tmp_path / "ro" / "run")]) == 2
        assert f"train: {tmp_path / 'ro'}/" in caplog.text and "write elsewhere (--run)" in caplog.text
        caplog.clear()
        predict = ["predict", str(tiny_run / "run"), str(tiny_run / "v0.mp4"), "--no-progress"]
        assert main([*predict, "--output", str(tmp_path / "ro" / "p")]) == 2
        assert f"predict: {tmp_path / 'ro' / 'p'}" in caplog.text and "write elsewhere (--output)" in caplog.text
    caplog.clear()
    run_copy = tmp_path / "run"
    shutil.copytree(tiny_run / "run", run_copy)
    with read_only(run_copy):  # the default output, RUN/predictions, cannot be written
        assert main(["predict", str(run_copy), str(tiny_run / "v0.mp4"), "--no-progress"]) == 2
    assert f"predict: {run_copy}" in caplog.text and "write elsewhere (--output)" in caplog.text
    assert "unexpected error" not in caplog.text
    reason = {"mount": "Read-only file system", "chattr": "Operation not permitted", "chmod": "Permission denied"}
    assert reason[how] in caplog.text


@pytest.mark.timeout(300)
def test_a_full_disk_exits_2_naming_the_folder_and_never_crashes(tiny_run, tmp_path, caplog):
    """features segfaulted (exit 139: h5py closing a file whose write failed for space); train exited 3."""
    with full_disk(tmp_path / "full") as full:
        done = subprocess.run(
            [sys.executable, "-m", "pipeline", "features", "--manifest", str(tiny_run / "m.csv"), *TINY]
            + ["--out-dir", str(full)],
            capture_output=True,
            text=True,
            timeout=240,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        assert done.returncode == EXIT_BAD_INPUT, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert f"features: {full}/m: No space left on device: " in last and "MiB free where" in last
        assert "free space there, or write elsewhere (--out-dir or --store); finished work was kept" in last
        run = ["train", "--store", str(tiny_run / "s.h5"), "--epochs", "1", "--no-progress"]
        assert main([*run, "--run", str(full / "run")]) == EXIT_BAD_INPUT
        assert f"train: writing in {full / 'run'}: No space left on device" in caplog.text
        assert "unexpected error" not in caplog.text


def test_an_environment_error_behind_another_exception_is_still_the_users():
    """A PermissionError that caused another error (a library wrapping it) is told as the user's, exit 2."""
    from pipeline.cli import _environment_error, _environment_message

    try:
        try:
            raise PermissionError(13, "Permission denied", "/data/x.h5")
        except PermissionError as inner:
            raise RuntimeError("could not save") from inner
    except RuntimeError as outer:
        cause = _environment_error(outer)
    assert cause is not None and cause.filename == "/data/x.h5"
    args = argparse.Namespace(command="predict", output=None, run="R")
    assert _environment_message(args, cause) == (
        "predict: /data/x.h5: Permission denied; check its permissions and its folder's (a read-only disk?), "
        "or write elsewhere (--output)"
    )
    assert _environment_error(RuntimeError("no cause")) is None
    assert _environment_error(OSError(2, "No such file")) is None  # not the environment: a bug or a missing input


def test_a_crafted_run_config_cannot_make_predict_build_a_huge_cnn(tiny_run, tmp_path, caplog):
    """A run config with image size 20000 made predict crash TensorFlow; refused before anything is traced."""
    crafted = tmp_path / "run"
    shutil.copytree(tiny_run / "run", crafted)
    config_path = crafted / "model" / "config.json"
    config = json.loads(config_path.read_text())
    config["feature_config"]["image_size"] = 20000
    config_path.write_text(json.dumps(config))
    assert main(["predict", str(crafted), str(tiny_run / "v0.mp4"), "--no-progress"]) == EXIT_BAD_INPUT
    assert "20000" in caplog.text and "unexpected error" not in caplog.text
    assert not (crafted / "predictions" / "predictions.csv").exists()
