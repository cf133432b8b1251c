"""Predict on new videos with a trained run: real files, failures, windows, and refused runs."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.train import train
from pipeline.dataset.demo import write_demo_dataset
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.backbones import Weights, load_backbone
from pipeline.extract.config import FeatureConfig
from pipeline.extract.run import extract_features
from pipeline.predict.outputs import write_outputs
from pipeline.predict.run import RunError, load_run
from pipeline.predict.videos import predict_videos

import fault_hooks
from helpers import BROKEN, VIDEOS, WEIGHTS_FILE, run_cli

CONFIG = FeatureConfig(backbone="vgg16", weights="none", image_size=32, sampling="uniform:8", precision="float32")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    manifest = write_demo_dataset(root / "clips", root / "demo.csv", per_class=7)
    backbone = load_backbone(CONFIG.backbone, Weights("none"), CONFIG.image_size, precision="float32")
    extract_features(read_manifest(manifest), root / "store.h5", backbone, CONFIG, progress=False)
    train(root / "store.h5", root / "run", TrainConfig(models=("gru", "mean"), epochs=2, patience=2), progress=False)
    return root / "run"


def test_predict_real_files_and_failures(shared, run_dir, tmp_path):
    run = load_run(run_dir)
    assert run.model_name == "gru" and run.feature_config["backbone"] == "vgg16"
    inputs = [
        VIDEOS / "mmaction2/test.avi",
        VIDEOS / "decord/video_90.mov",
        VIDEOS / "mdn_flower/flower.webm",
        BROKEN / "Megamind_is_html.avi",
        tmp_path / "absent.mp4",
    ]
    predictions = predict_videos(run, inputs, top_k=2, progress=False)
    table = predictions.videos.set_index("video")
    assert predictions.failed == 2
    assert table.loc[str(BROKEN / "Megamind_is_html.avi"), "status"] == "failed:open"
    assert table.loc[str(tmp_path / "absent.mp4"), "status"] == "failed:missing"
    ok = table[table["status"] == "ok"]
    assert len(ok) == 3 and set(ok["label_1"]) <= set(run.labels)
    assert ((ok["probability_1"] >= ok["probability_2"]) & (ok["probability_1"] <= 1)).all()
    written = write_outputs(predictions, tmp_path / "out", run.labels)
    assert pd.read_csv(written[0]).shape[0] == 5 and json.loads(written[1].read_text())[0]["status"] == "ok"


def test_a_hanging_and_a_crashing_video_cost_only_themselves(run_dir, make_video):
    # 10 s: the crashing video's retry starts a new decoder process, which took over 5 s on a loaded 2-core machine
    good = [make_video(f"good{i}.mp4", seed=i) for i in range(3)]
    hang, crash = make_video("hang.mp4"), make_video("crash.mp4")
    run = load_run(run_dir)
    predictions = predict_videos(
        run,
        [good[0], hang, good[1], crash, good[2]],
        workers=2,
        timeout=10,
        progress=False,
        decode_hook=fault_hooks.inject,
    )
    table = predictions.videos.set_index("video")
    assert predictions.failed == 2 and (table.loc[[str(g) for g in good], "status"] == "ok").all()
    assert table.loc[str(hang), "status"] == "failed:timeout" and "longer than 10s" in table.loc[str(hang), "error"]
    assert table.loc[str(crash), "status"] == "failed:crash" and "SIGSEGV" in table.loc[str(crash), "error"]

    windows = predict_videos(
        run, [hang, good[0]], window=0.5, workers=2, timeout=10, progress=False, decode_hook=fault_hooks.inject
    )
    assert list(windows.videos["status"]) == ["failed:timeout", "ok"]
    assert len(windows.windows) == 2 and set(windows.windows["video"]) == {
        str(good[0])
    }  # 12 frames at 10 fps: windows at 0 and 0.5 s


def test_sliding_windows_on_a_long_clip(shared, run_dir, tmp_path):
    run = load_run(run_dir, model="mean")
    predictions = predict_videos(
        run, [VIDEOS / "opencv_tutorial/slow_traffic_small.mp4"], window=6, stride=4, smooth=3, progress=False
    )
    track = predictions.windows
    assert len(track) == 7  # 914 frames at 29.97 fps: windows start at 0, 4, ... 24 s
    assert track["start_s"].is_monotonic_increasing and (track["end_s"] - track["start_s"]).round(1).eq(6.0).all()
    smoothed = track[[f"smoothed:{label}" for label in run.labels]].to_numpy()
    raw = track[[f"p_{label}" for label in run.labels]].to_numpy()
    assert abs(smoothed[1] - raw[0:3].mean(axis=0)).max() < 1e-6  # centred moving average
    written = write_outputs(predictions, tmp_path / "out", run.labels)
    assert (
        (tmp_path / "out/windows.csv").is_file() and written[-1].suffix == ".png" and written[-1].stat().st_size > 5000
    )


def test_runs_with_missing_or_different_weights_are_refused(shared, run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config_file = copy / "model/config.json"
    config = json.loads(config_file.read_text())
    config["feature_config"]["weights"] = "sha256:" + "0" * 64
    config["store"] = ""
    config_file.write_text(json.dumps(config))
    with pytest.raises(RunError, match="not available; pass --weights PATH"):
        load_run(copy)
    with pytest.raises(RunError, match="but the run was trained on features from sha256:0000"):
        load_run(copy, weights=str(WEIGHTS_FILE))
    with pytest.raises(RunError, match="has no model 'lstm'"):
        load_run(run_dir, model="lstm")


def test_cli_prints_top_k_and_exits_1_on_a_failed_video(shared, run_dir, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "predict",
            str(run_dir),
            str(VIDEOS / "imageio/realshort.mp4"),
            str(BROKEN / "imageio_test.webm"),
            "--output",
            str(tmp_path / "p"),
            "--no-progress",
            "--workers",
            "1",
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith(str(VIDEOS / "imageio/realshort.mp4")) and lines[1].endswith(
        "remux it, e.g. `ffmpeg -i IN -c copy OUT.mkv`"
    )
    assert (tmp_path / "p/predictions.csv").is_file()
    refused = run_cli("predict", tmp_path, "x.mp4")
    assert refused.returncode == 2 and "is not a trained run" in refused.stderr


def test_timeline_takes_labels_and_names_literally(tmp_path):
    """A `$` in a label or file name is a dollar sign in the timeline figure, not math that crashes it."""
    from pipeline.report.figures import plot_window_track, save_figure

    labels = [r"$\bogus$", "a $5 tip"]
    track = pd.DataFrame(
        {
            "video": [r"/videos/$\x$.mp4"] * 2,
            "start_s": [0.0, 1.0],
            "end_s": [1.0, 2.0],
            f"smoothed:{labels[0]}": [0.7, 0.2],
            f"smoothed:{labels[1]}": [0.3, 0.8],
            "smoothed_label": labels,
        }
    )
    path = save_figure(plot_window_track(track, labels), tmp_path / "timeline.png")
    assert path.stat().st_size > 0


def test_output_folder_of_someone_elses_is_refused_and_ours_is_replaced(shared, run_dir, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "predictions.csv").write_text("my own spreadsheet\n")
    (foreign / "notes.txt").write_text("keep me\n")
    video = str(VIDEOS / "imageio/realshort.mp4")
    command = [sys.executable, "-m", "pipeline", "predict", str(run_dir), video, "--no-progress", "--output"]
    refused = subprocess.run([*command, str(foreign)], capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and str(foreign) in refused.stderr
    assert (foreign / "predictions.csv").read_text() == "my own spreadsheet\n" and (foreign / "notes.txt").is_file()

    ours = tmp_path / "ours"
    run = load_run(run_dir)
    stale = ours / "timeline-000-old.png"
    write_outputs(predict_videos(run, [video], progress=False), ours, run.labels)
    stale.write_bytes(b"a previous prediction's timeline")
    write_outputs(predict_videos(run, [video], progress=False), ours, run.labels)
    assert not stale.exists() and (ours / "predictions.csv").is_file()


def received_run(run_dir, tmp_path):
    """A copy of the trained run, as someone would send it."""
    return shutil.copytree(run_dir, tmp_path / "received")


def test_output_folders_predict_did_not_write_are_refused(tmp_path):
    from pipeline.predict.outputs import prepare_output
    from pipeline.runs import folders
    from pipeline.runs.folders import FolderError

    spreadsheet = tmp_path / "mine"
    spreadsheet.mkdir()
    (spreadsheet / "predictions.csv").write_text("name,score\nalice,3\n")
    with pytest.raises(FolderError, match="is not empty and is not a predictions folder"):
        prepare_output(spreadsheet)
    assert (spreadsheet / "predictions.csv").read_text() == "name,score\nalice,3\n"

    elsewhere = tmp_path / "elsewhere"  # a received run whose predictions/ points at the user's files
    elsewhere.mkdir()
    (elsewhere / "predictions.csv").write_text("video,status,label_1,probability_1,error\n")
    (elsewhere / "timeline-000-holiday.png").write_bytes(b"mine")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "predictions").symlink_to(elsewhere)
    with pytest.raises(FolderError, match="is a symbolic link"):
        prepare_output(tmp_path / "run" / "predictions")
    assert sorted(path.name for path in elsewhere.iterdir()) == ["predictions.csv", "timeline-000-holiday.png"]

    old = tmp_path / "old"  # what an earlier version wrote: predict's own header, no marker
    old.mkdir()
    (old / "predictions.csv").write_text(
        "video,status,label_1,probability_1,label_2,probability_2,error\nx.mp4,ok,a,0.9,b,0.1,\n"
    )
    (old / "timeline-000-x.png").write_bytes(b"png")
    assert prepare_output(old) == old and folders.made_by_tool(old, "predictions")
    assert (old / "predictions.csv").exists() and (old / "timeline-000-x.png").exists()  # replaced only at the end


@pytest.mark.parametrize(
    "file, content, message",
    [
        ("config.json", {"feature_config": {}}, "has no usable backbone"),
        ("config.json", "without sequence", "has no usable sequence"),
        ("config.json", "sequence of strings", "its sequence settings"),
        ("metrics.json", ["gru"], "holds a JSON list"),
        ("metrics.json", {"../gru": {}}, "'../gru' is not a model name"),
        ("labels.json", "a,b", "is not valid JSON"),
    ],
)
def test_malformed_runs_are_refused_naming_the_file(run_dir, tmp_path, caplog, file, content, message):
    from pipeline.cli import main

    received = received_run(run_dir, tmp_path)
    path = received / "model" / file
    config = json.loads((received / "model" / "config.json").read_text())
    if content == "without sequence":
        content = {key: value for key, value in config.items() if key != "sequence"}
    elif content == "sequence of strings":
        content = {**config, "sequence": {"seq_len": "8"}}
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(ValueError, match=re.escape(str(path)) + ".*" + re.escape(message)):
        load_run(received)
    assert main(["predict", str(received), str(tmp_path / "x.mp4"), "--no-progress"]) == 2
    assert str(path) in caplog.text


@pytest.mark.slow
def test_stdout_keeps_one_line_per_video_whatever_the_labels(shared, run_dir, tmp_path):
    received = received_run(run_dir, tmp_path)
    labels = json.loads((received / "model" / "labels.json").read_text())
    hostile = [f"line\nbreak\t{number}\\" for number in range(len(labels))]
    (received / "model" / "labels.json").write_text(json.dumps(hostile))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline",
            "predict",
            str(received),
            str(VIDEOS / "imageio/realshort.mp4"),
            "--top-k",
            "2",
            "--no-progress",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.splitlines()
    video, ranked = line.split("\t")
    assert video == str(VIDEOS / "imageio/realshort.mp4")
    assert all(
        label.rsplit(" ", 1)[0] in [r"line\nbreak\t" + f"{number}\\\\" for number in range(len(labels))]
        for label in ranked.split(", ")
    )
