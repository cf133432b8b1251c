"""A newcomer's first hour (issue 22): quiet output, an exit policy for broken clips, readable store names and the
lookup of a store by file, folder or manifest, a `make clean` that spares the user's work, the ConvLSTM time budget,
and the console script's name in its help."""

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import pandas as pd
import pytest

from pipeline import store
from pipeline.cli import build_parser, main, program_name
from pipeline.cli.quiet import is_noise
from pipeline.core.device import device_line
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.config import ExtractSummary, FeatureConfig, parse_max_failures
from pipeline.extract.run import extract_features, store_path_for
from pipeline.nextframe.budget import EpochPlan

from helpers import BROKEN, TINY_CONFIG, manifest_csv, tiny_backbone

ROOT = Path(__file__).resolve().parents[1]
TOOL_LINE = re.compile(r"\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ")  # the CLI's log format
BAR = re.compile(r".*\d+%\|")  # a tqdm bar, as features and train draw them
TINY = ["--backbone", "vgg16", "--weights", "none", "--image-size", "32", "--sampling", "uniform:2"]


def cli(*args, executable=None, cwd=None):
    """The command line as a user starts it, in a fresh process, without the test suite's TF_CPP_MIN_LOG_LEVEL."""
    env = {key: value for key, value in os.environ.items() if key != "TF_CPP_MIN_LOG_LEVEL"}
    command = [executable] if executable else [sys.executable, "-m", "pipeline"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, cwd=cwd)


def foreign_lines(stderr: str) -> list[str]:
    """The parts of stderr that are neither the tool's log lines nor progress bars."""
    parts = [part for line in stderr.splitlines() for part in line.split("\r")]
    return [part for part in parts if part.strip() and not TOOL_LINE.match(part) and not BAR.match(part)]


# --- quiet by default, and the exit policy of a real `features` run -----------------------------


def test_features_and_train_print_only_the_tools_lines_and_one_broken_clip_of_ten_exits_0(tmp_path, make_video):
    clips = [make_video(f"v{i}.mp4", frames=8, seed=i) for i in range(9)]
    csv = manifest_csv(
        tmp_path / "mine.csv",
        [(str(clip), f"c{i % 2}") for i, clip in enumerate(clips)] + [(str(BROKEN / "Megamind_is_html.avi"), "c1")],
    )
    options = ["features", "--manifest", str(csv), *TINY, "--out-dir", str(tmp_path / "features")]
    first = cli(*options)
    assert first.returncode == 0, first.stderr
    assert foreign_lines(first.stderr) == []  # no absl, cudart_stub, cuInit, oneDNN or decord `ERROR opening` line
    assert "Megamind_is_html.avi [open]" in first.stderr  # the summary names the failure
    assert "1 of 10 videos failed (10%), within --max-failures 10%" in first.stderr
    store_path = Path(first.stdout.strip())
    assert len(store.read_failures(store_path)) == 1 and len(store.read_videos(store_path)) == 9

    again = cli(*options)  # the known failure is not retried, and still counts: 1 of 10
    assert again.returncode == 0 and "1 known failures not retried" in again.stderr
    assert "Megamind_is_html.avi [open]" in again.stderr
    strict = cli(*options, "--strict")
    assert strict.returncode == 1 and "more than --max-failures 0%" in strict.stderr

    verbose = cli(*options, "--retry-failed", "-v")  # after the command: the libraries' own lines are back
    assert verbose.returncode == 0
    assert "ERROR opening" in verbose.stderr and " DEBUG " in verbose.stderr  # decord's dmlc line and debug logging

    trained = cli("train", "--store", str(store_path.parent), "--epochs", "2", "--run", str(tmp_path / "run"))
    assert trained.returncode == 0, trained.stderr
    assert foreign_lines(trained.stderr) == [] and "gru: test accuracy" in trained.stderr
    assert f"store: {store_path}" in trained.stderr  # the folder named its one store


def test_a_majority_of_broken_clips_still_exits_1(tmp_path, make_video):
    broken = ["Megamind_is_html.avi", "imageio_test.webm", "opencv_output_truncated_xvid.avi"]
    csv = manifest_csv(
        tmp_path / "m.csv", [(str(make_video("ok.mp4")), "a"), *[(str(BROKEN / name), "b") for name in broken]]
    )
    options = ["features", "--manifest", str(csv), *TINY, "--no-progress", "--out-dir", str(tmp_path / "f")]
    result = cli(*options)
    assert result.returncode == 1
    assert "3 of 4 videos failed (75%), more than --max-failures 10% (0 of 4 videos): exit 1" in result.stderr
    assert all(f"{name} [open]" in result.stderr for name in broken)
    lenient = cli(*options, "--max-failures", "3")
    assert lenient.returncode == 0 and "within --max-failures 3 (3 of 4 videos)" in lenient.stderr


def test_the_exit_policy_counts_every_kind_of_failure_against_the_threshold():
    ok = ExtractSummary(Path("s.h5"), total=10, new=9, failed=1)
    assert ok.exit_code == 0 and ok.allowed_failures == 1
    assert ExtractSummary(Path("s.h5"), total=10, failed=1, max_failures=0).exit_code == 1  # --strict
    assert ExtractSummary(Path("s.h5"), total=10, known_failures=1, missing=1).exit_code == 1  # 2 of 10
    assert ExtractSummary(Path("s.h5"), total=30, failed=3).exit_code == 0  # 10% of 30, float-safe
    assert ExtractSummary(Path("s.h5"), total=10, failed=2, max_failures=2).exit_code == 0  # a count
    assert ExtractSummary(Path("s.h5"), total=100, lost=1).exit_code == 1  # not processed: rerun, whatever the policy
    assert ExtractSummary(Path("s.h5"), total=100, unaccounted=1).exit_code == 1
    assert [parse_max_failures(text) for text in ("0.1", "10%", "3", "0", " 0.25 ")] == [0.1, 0.1, 3.0, 0.0, 0.25]
    for bad in ("1.5", "-1", "abc", "100%", "nan", "inf", ""):
        with pytest.raises(Exception, match="--max-failures"):
            parse_max_failures(bad)


# --- -v / -q anywhere, the program's name, the GPU line, the native-line filter ------------------------


def test_verbosity_goes_before_or_after_the_command_and_the_two_contradict(capsys):
    parser = build_parser("video-pipeline")
    for argv in (["-v", "inspect", "s.h5"], ["inspect", "s.h5", "-v"], ["inspect", "-v", "s.h5"]):
        args = parser.parse_args(argv)
        assert (args.verbose, args.quiet) == (True, False), argv
    args = parser.parse_args(["train", "--store", "s.h5", "-q"])
    assert (args.verbose, args.quiet) == (False, True)
    assert parser.parse_args(["inspect", "s.h5"]).verbose is False
    for argv in (["-q", "-v", "inspect", "s.h5"], ["-q", "inspect", "s.h5", "-v"], ["inspect", "s.h5", "-q", "-v"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        error = capsys.readouterr().err
        assert stopped.value.code == 2 and ("contradict" in error or "not allowed with" in error), argv


def test_usage_names_the_program_as_it_was_started():
    assert program_name(str(ROOT / "pipeline" / "__main__.py")) == "python -m pipeline"
    assert program_name("/somewhere/.venv/bin/video-pipeline") == "video-pipeline"
    as_module = cli("--help")
    assert as_module.returncode == 0 and as_module.stdout.startswith("usage: python -m pipeline [-h] [-v | -q]")
    script = Path(sys.executable).with_name("video-pipeline")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}: install the package (make install)")
    as_script = cli("features", "--help", executable=str(script))
    assert as_script.returncode == 0 and as_script.stdout.startswith("usage: video-pipeline features [-h]")


def test_the_log_names_the_gpu_tensorflow_uses():
    gpus = [SimpleNamespace(name="/physical_device:GPU:0"), SimpleNamespace(name="/physical_device:GPU:1")]
    details = {"/physical_device:GPU:0": {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}}
    level, line = device_line(gpus, lambda gpu: details.get(gpu.name, {}))
    assert level == 20  # INFO
    assert line == (
        "TensorFlow uses 2 GPUs: GPU:0 (NVIDIA H100 80GB HBM3, compute capability 9.0); GPU:1 (unknown model)"
    )
    assert device_line([])[0] == 10  # DEBUG on a CPU machine: nothing to announce


def test_the_filter_drops_the_libraries_formats_and_keeps_everything_else():
    noise = [
        b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        b"I0000 00:00:1796689170.906196   19968 port.cc:153] oneDNN custom operations are on.",
        b"I0000 00:00:1796689170.906536   19968 cudart_stub.cc:31] Could not find cuda drivers on your machine",
        b"E0000 00:00:1796689174.287139   19968 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)",
        b"[00:19:36] /github/workspace/src/video/video_reader.cc:83: ERROR opening: x.avi, Invalid data found",
        b"[h264 @ 0x55d0c8a3e2c0] error while decoding MB 3 4",
        b"[mov,mp4,m4a,3gp,3g2,mj2 @ 0x5581] moov atom not found",
    ]
    kept = [
        b"F0000 00:00:1796689174.287139   19968 check.cc:1] Check failed: a crash's last words",
        b"Fatal Python error: Segmentation fault",
        b"00:19:37 WARNING x.avi: [open] not a video",
        b"Traceback (most recent call last):",
    ]
    assert all(is_noise(line) for line in noise) and not any(is_noise(line) for line in kept)


# --- readable store names; the store by file, folder or manifest ------------------------------------------


def _store(tmp_path, manifest_csv_path, config=TINY_CONFIG, store_path=None):
    """A real store of `manifest_csv_path` at its default path (or `store_path`), from tiny real clips."""
    path = Path(store_path) if store_path else store_path_for(manifest_csv_path, config, tmp_path / "features")
    summary = extract_features(read_manifest(manifest_csv_path), path, tiny_backbone(), config, progress=False)
    assert summary.exit_code == 0
    return path


def test_store_names_say_dataset_backbone_size_and_sampling():
    name = FeatureConfig().store_name("myset", "/data/myset.csv")
    assert re.fullmatch(r"myset-mobilenet_v2-224px-uniform16-[0-9a-f]{8}\.h5", name)
    other = FeatureConfig(backbone="vgg16", weights="none", image_size=112, sampling="fps:2.5", pooling="grid2")
    assert re.fullmatch(r"d-vgg16-random-112px-fps2\.5-grid2-[0-9a-f]{8}\.h5", other.store_name("d"))
    assert FeatureConfig().store_name("d", "/a/d.csv") != FeatureConfig().store_name("d", "/b/d.csv")
    assert FeatureConfig().store_name("d", "/a/d.csv") == FeatureConfig().store_name("d", "/a/d.csv")


def test_train_finds_the_store_by_file_folder_or_manifest_and_refuses_naming_the_candidates(
    tmp_path, make_video, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    rows = [(str(make_video(f"v{i}.mp4", frames=6, seed=i)), f"c{i % 2}") for i in range(4)]
    mine = manifest_csv(tmp_path / "mine.csv", rows)
    first = _store(tmp_path, mine)
    assert first.parent == tmp_path / "features" / "mine" and first.name.startswith("mine-vgg16-random-32px-uniform4-")
    root = tmp_path / "features"
    assert store.find_store(first, root) == first
    assert store.find_store(first.parent, root) == first
    assert store.find_store(mine, root) == first

    # the same stem in another folder: its store lands in the same folder, and the manifest tells them apart
    (tmp_path / "other").mkdir()
    theirs = manifest_csv(tmp_path / "other" / "mine.csv", rows[:3])
    second = _store(tmp_path, theirs)
    assert second.parent == first.parent and second != first
    assert store.find_store(mine, root) == first and store.find_store(theirs, root) == second
    with pytest.raises(store.StoreError) as refused:
        store.find_store(first.parent, root)
    assert str(first) in str(refused.value) and str(second) in str(refused.value)

    # a second config of the same manifest: the manifest alone is ambiguous, and says which stores it has
    third = _store(tmp_path, mine, FeatureConfig(**{**TINY_CONFIG.to_dict(), "sampling": "uniform:2"}))
    with pytest.raises(store.StoreError, match="2 feature stores") as refused:
        store.find_store(mine, root)
    assert str(first) in str(refused.value) and str(third) in str(refused.value) and "uniform:2" in str(refused.value)

    with pytest.raises(store.StoreError, match="no feature store for manifest"):
        store.find_store(manifest_csv(tmp_path / "new.csv", rows), root)
    with pytest.raises(store.StoreError, match="no manifest at"):
        store.find_store(tmp_path / "missing.csv", root)
    (tmp_path / "empty").mkdir()
    with h5py.File(tmp_path / "empty" / "weights.h5", "w") as other_hdf5:  # an HDF5 file that is no store
        other_hdf5["kernel"] = [1.0]
    with pytest.raises(store.StoreError, match="no feature store for folder"):
        store.find_store(tmp_path / "empty", root)


def test_a_store_with_an_old_hash_name_is_still_found_and_not_renamed(tmp_path, make_video):
    rows = [(str(make_video(f"v{i}.mp4", frames=6, seed=i)), f"c{i % 2}") for i in range(2)]
    mine = manifest_csv(tmp_path / "mine.csv", rows)
    readable = store_path_for(mine, TINY_CONFIG, tmp_path / "features")
    owner = hashlib.sha256(str(mine.resolve()).encode()).hexdigest()[:6]
    legacy = readable.parent / f"{TINY_CONFIG.legacy_store_name().removesuffix('.h5')}-m{owner}.h5"  # as before
    assert legacy.name.startswith("vgg16-none-32px-")
    assert legacy.name == TINY_CONFIG.legacy_store_name(str(mine.resolve()))
    _store(tmp_path, mine, store_path=legacy)
    assert store_path_for(mine, TINY_CONFIG, tmp_path / "features") == legacy  # features reuses it
    assert store.find_store(mine, tmp_path / "features") == legacy and not readable.exists()


# --- make: train before features, clean spares the user's work ---------------------------------------------


def _tree(tmp_path) -> Path:
    """A copy of the Makefile's tree: the Makefile, pyproject.toml and the checked-in demo manifest."""
    tree = tmp_path / "tree"
    (tree / "manifests").mkdir(parents=True)
    shutil.copy(ROOT / "Makefile", tree / "Makefile")
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    shutil.copy(ROOT / "manifests" / "demo.csv", tree / "manifests" / "demo.csv")
    return tree


def _make(tree: Path, *targets: str) -> subprocess.CompletedProcess:
    venv = Path(sys.executable).parent.parent
    variables = [f"VENV={venv}", f"STAMP={tree / 'installed'}"]  # the test's own environment, installed
    (tree / "installed").touch()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(["make", *targets, *variables], cwd=tree, capture_output=True, text=True, env=env)


def _fake_store(path: Path, manifest: Path) -> None:
    """A store's index (real HDF5 with a store's attributes) and its folders, as `features` leaves them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.attrs.update(
            schema_version=store.SCHEMA_VERSION, manifest=str(manifest.resolve()), feature_config=json.dumps({})
        )
    store.segments_dir(path).mkdir()
    (store.segments_dir(path) / "seg-0.h5").write_bytes(b"frames")
    path.with_suffix(".failures.csv").write_text("video_id,path,stage,error,message\n")


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_clean_removes_only_what_the_demo_made(tmp_path):
    tree = _tree(tmp_path)
    demo = tree / "manifests" / "demo.csv"
    (tree / "manifests" / "demo").mkdir()
    (tree / "manifests" / "demo" / "grow_000.mp4").write_bytes(b"clip")
    _fake_store(tree / "features" / "demo" / "demo-vgg16-random-64px-uniform8-00000000.h5", demo)
    (tmp_path / "elsewhere").mkdir()
    elsewhere = manifest_csv(tmp_path / "elsewhere" / "demo.csv", [])  # another manifest called demo.csv
    _fake_store(tree / "features" / "demo" / "demo-mobilenet_v2-224px-uniform16-11111111.h5", elsewhere)
    _fake_store(tree / "features" / "myset" / "myset-mobilenet_v2-224px-uniform16-22222222.h5", tmp_path / "myset.csv")
    for run in ("demo", "convlstm-demo", "myset-gru"):
        (tree / "reports" / run / "model").mkdir(parents=True)
        (tree / "reports" / run / "run.json").write_text("{}")

    assert "features/*" not in _make(tree, "-n", "clean").stdout
    result = _make(tree, "clean")
    assert result.returncode == 0, result.stderr
    left = sorted(str(path.relative_to(tree)) for path in tree.rglob("*") if path.is_file())
    assert left == [
        "Makefile",
        "features/demo/demo-mobilenet_v2-224px-uniform16-11111111.failures.csv",  # another demo.csv's store
        "features/demo/demo-mobilenet_v2-224px-uniform16-11111111.h5",
        "features/demo/demo-mobilenet_v2-224px-uniform16-11111111.h5.segments/seg-0.h5",
        "features/myset/myset-mobilenet_v2-224px-uniform16-22222222.failures.csv",  # the user's own store
        "features/myset/myset-mobilenet_v2-224px-uniform16-22222222.h5",
        "features/myset/myset-mobilenet_v2-224px-uniform16-22222222.h5.segments/seg-0.h5",
        "installed",
        "manifests/demo.csv",  # checked in
        "pyproject.toml",
        "reports/myset-gru/run.json",  # the user's own run
    ]


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
def test_make_train_before_features_names_the_missing_store(tmp_path):
    tree = _tree(tmp_path)
    assert "cat " not in _make(tree, "-n", "train").stdout
    result = _make(tree, "train")
    assert result.returncode != 0
    assert "no feature store for manifest manifests/demo.csv" in result.stderr and "cat:" not in result.stderr
    assert "make features" in result.stderr


# --- the ConvLSTM time budget ---------------------------------------------------------------------------------


def test_the_plan_times_the_first_epoch_without_its_tracing_and_keeps_time_for_the_evaluation():
    # first epoch: 10 batches of 1 s, one of them 40 s of tracing, so 49 s in all
    plan = EpochPlan(budget_s=300, started=0.0, max_epochs=50)
    assert plan.after_epoch(0, 60.0, [40.0] + [1.0] * 9, now=70.0)
    assert plan.epoch_s == pytest.approx(11.5) and plan.trace_s == pytest.approx(48.5)
    assert plan.planned == 1 + int((300 - 70 - plan.finish_s()) // 11.5) and not plan.stopped
    assert not plan.after_epoch(plan.planned - 1, 11.5, [1.0] * 10, now=300 - plan.finish_s() - 5)
    assert plan.stopped and plan.summary()["stopped_by_time_budget"]

    small = EpochPlan(budget_s=30, started=0.0, max_epochs=6)
    assert not small.after_epoch(0, 60.0, [40.0] + [1.0] * 9, now=65.0) and small.epochs == 1 and small.stopped
    roomy = EpochPlan(budget_s=3600, started=0.0, max_epochs=6)
    assert roomy.after_epoch(0, 20.0, [2.0] * 10, now=25.0) and roomy.epochs == 6


def test_a_convlstm_run_under_a_tight_budget_stops_and_says_so(tmp_path):
    run = tmp_path / "run"
    argv = ["convlstm", "--sequences", "10", "--frame-size", "16", "--filters", "2", "--epochs", "4"]
    assert main([*argv, "--batch-size", "4", "--examples", "1", "--time-budget", "0.05", "--run", str(run)]) == 0
    metrics = json.loads((run / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 1 and metrics["stopped_by"] == "time budget"
    assert metrics["time_budget_minutes"] == 0.05 and metrics["epochs_planned"] == 1
    assert json.loads((run / "model" / "config.json").read_text())["time_budget"] == 0.05
    page = (run / "report.md").read_text()
    assert "within a time budget of 0.05 min" in page and "time budget (whole run)" in page
    history = pd.read_csv(run / "model" / "history.csv")
    assert len(history) == 1
