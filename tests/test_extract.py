"""Stage one end to end: real files into a real HDF5 store, failures, reruns, kill -9, the CLI."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from pipeline import store
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.backbones import Weights, load_backbone
from pipeline.extract.config import FeatureConfig
from pipeline.extract.run import extract_features, store_path_for

from helpers import BROKEN, VIDEOS, manifest_csv, run_cli

CONFIG = FeatureConfig(backbone="vgg16", weights="none", image_size=32, sampling="uniform:4", precision="float32")
GOOD = [
    "mmaction2/test.avi",
    "decord/video_90.mov",
    "mdn_flower/flower.webm",
    "mdn_flower/flower.ogg",
    "decord/flipping_a_pancake.mkv",
    "imageio/cockatoo.mp4",
    "mmaction2/demo_skeleton.mp4",
    "misc/pfrazee_test.mov",
]
BROKEN_FILES = ["Megamind_is_html.avi", "imageio_test.webm", "opencv_output_truncated_xvid.avi", "decord_corrupted.mp4"]


@pytest.fixture(scope="module")
def backbone():
    return load_backbone(CONFIG.backbone, Weights("none"), CONFIG.image_size, batch_size=16, precision="float32")


def run(manifest, store_path, backbone, **options):
    return extract_features(read_manifest(manifest), store_path, backbone, CONFIG, progress=False, **options)


@pytest.mark.slow
def test_good_and_broken_shared_files(shared, tmp_path, backbone):
    rows = [(str(VIDEOS / p), "good") for p in GOOD] + [(str(BROKEN / p), "bad") for p in BROKEN_FILES]
    rows += [
        (str(BROKEN / "sxplayer_test_h264_444_16x16.mkv"), "edge"),
        (str(BROKEN / "decord_unordered_pts.mov"), "edge"),
    ]
    csv = manifest_csv(tmp_path / "mixed.csv", rows)
    path = store_path_for(csv, CONFIG, tmp_path / "features")
    summary = run(csv, path, backbone, workers=2)
    assert (summary.new, summary.failed, summary.exit_code) == (10, 4, 1)

    videos = store.read_videos(path)
    assert len(videos) == 10 and set(videos["label"]) == {"good", "edge"}
    assert list(videos["path"][:8]) == [str((VIDEOS / p).resolve()) for p in GOOD]  # manifest order
    assert (videos["length"] == 4).all() and list(videos["offset"]) == list(range(0, 40, 4))
    with h5py.File(path, "r") as handle:
        assert handle["features"].shape == (40, 512) and handle["features"].dtype == np.float16
        assert handle["frame_index"].shape == handle["timestamps"].shape == (40,)
        assert handle.attrs["schema_version"] == store.SCHEMA_VERSION
    attrs = store.read_attrs(path)
    assert attrs["feature_config"] == CONFIG.to_dict() and "tensorflow" in attrs["versions"]

    failures = pd.read_csv(path.with_suffix("").with_name(path.stem + ".failures.csv"))
    assert sorted(Path(p).name for p in failures["path"]) == sorted(BROKEN_FILES)
    assert failures["message"].str.len().min() > 20 and set(failures["stage"]) == {"open", "decode"}

    again = run(csv, path, backbone)  # known failures with unchanged files are not retried
    assert (again.new, again.skipped, again.known_failures, again.exit_code) == (0, 10, 4, 1)
    retried = run(csv, path, backbone, retry_failed=True)
    assert (retried.new, retried.failed) == (0, 4)
    assert len(store.read_failures(path)) == 4


def test_incremental_rerun_and_changed_video(tmp_path, make_video, backbone):
    clips = [make_video(f"v{i}.mp4", seed=i) for i in range(4)]
    csv = manifest_csv(tmp_path / "m.csv", [(str(c), f"c{i % 2}") for i, c in enumerate(clips[:3])])
    path = tmp_path / "store.h5"
    assert run(csv, path, backbone).new == 3
    noop = run(csv, path, backbone)
    assert (noop.new, noop.skipped, noop.exit_code) == (0, 3, 0)
    before = store.read_videos(path)

    manifest_csv(csv, [(str(c), f"c{i % 2}") for i, c in enumerate(clips)])
    assert run(csv, path, backbone).new == 1  # only the added row
    after = store.read_videos(path)
    pd.testing.assert_frame_equal(after.iloc[:3], before)

    make_video("v0.mp4", frames=20, seed=9)  # a changed file has a new key and replaces its row
    os.utime(clips[0], ns=(time.time_ns(), time.time_ns() + 10**9))
    assert run(csv, path, backbone).new == 1
    final = store.read_videos(path)
    assert len(final) == 4 and final["video_id"].is_unique
    assert final.set_index("video_id").loc[str(clips[0]), "total_frames"] == 20


def test_changed_config_writes_a_different_store(tmp_path):
    other = FeatureConfig(backbone="vgg16", weights="none", image_size=32, sampling="uniform:8", precision="float32")
    assert store_path_for("m.csv", CONFIG, tmp_path) != store_path_for("m.csv", other, tmp_path)
    assert store_path_for("m.csv", CONFIG, tmp_path) == store_path_for(
        "m.csv", FeatureConfig(**CONFIG.to_dict()), tmp_path
    )
    with pytest.raises(ValueError, match="sampling"):
        FeatureConfig(sampling="uniform:x")


def test_relabel_move_retire_sync_without_extracting_then_train(tmp_path, make_video, backbone):
    from pipeline.classify.config import TrainConfig
    from pipeline.classify.train import train

    clips = [make_video(f"v{i}.mp4", seed=i) for i in range(12)]
    rows = [(str(c), f"c{i % 2}", "test" if i >= 9 else "train") for i, c in enumerate(clips)]
    csv = tmp_path / "m.csv"
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(csv, index=False)
    path = tmp_path / "s.h5"
    assert run(csv, path, backbone).new == 12
    rows[0] = (rows[0][0], "c1", "train")  # relabelled
    rows[1] = (rows[1][0], "c1", "test")  # moved from train to test
    del rows[2]  # retired (e.g. a clip that leaks into test)
    pd.DataFrame(rows, columns=["path", "label", "split"]).to_csv(csv, index=False)
    with pytest.raises(
        store.StoreError, match="changed since the feature store .* was last synced.*nothing is re-extracted"
    ):
        train(path, tmp_path / "refused", TrainConfig(models=("mean",)), progress=False)
    assert not (tmp_path / "refused").exists()

    synced = run(csv, path, backbone)
    assert (synced.new, synced.skipped, synced.frames, synced.exit_code) == (0, 11, 0, 0)
    videos = store.read_videos(path).set_index("video_id")
    assert str(clips[2]) not in videos.index and len(videos) == 11
    assert videos.loc[str(clips[0]), "label"] == "c1" and videos.loc[str(clips[1]), "split"] == "test"
    changes = store.read_attrs(path)["last_sync"]
    assert [changes[k]["count"] for k in ("relabelled", "moved", "retired")] == [1, 1, 1]
    result = train(path, tmp_path / "run", TrainConfig(models=("mean",)), progress=False)
    splits = pd.read_csv(result.run_dir / "model" / "splits.csv").set_index("video_id")
    assert str(clips[2]) not in splits.index
    assert splits.loc[str(clips[0]), "label"] == "c1" and splits.loc[str(clips[1]), "split"] == "test"


def test_two_manifests_with_one_name_never_share_a_store(tmp_path, make_video, backbone):
    a = manifest_csv(
        (tmp_path / "projA").mkdir() or tmp_path / "projA" / "train.csv", [(str(make_video("a.mp4", seed=1)), "x")]
    )
    b = manifest_csv(
        (tmp_path / "projB").mkdir() or tmp_path / "projB" / "train.csv", [(str(make_video("b.mp4", seed=2)), "y")]
    )
    path_a, path_b = store_path_for(a, CONFIG, tmp_path / "features"), store_path_for(b, CONFIG, tmp_path / "features")
    assert path_a != path_b and path_a.parent.name == path_b.parent.name == "train"
    run(a, path_a, backbone)
    run(b, path_b, backbone)
    assert run(a, path_a, backbone).new == 0 and run(b, path_b, backbone).new == 0  # no ping-pong
    with pytest.raises(store.StoreError, match=f"belongs to the manifest {a.resolve()}, not to {b.resolve()}"):
        run(b, path_a, backbone)
    assert list(store.read_videos(path_a)["label"]) == ["x"]


def test_same_file_twice_and_skipped_missing_rows_are_all_accounted_for(tmp_path, make_video, backbone):
    one, two = make_video("one.mp4", seed=1), make_video("two.mp4", seed=2)
    csv = tmp_path / "m.csv"
    pd.DataFrame(
        {
            "path": [str(one), str(two), str(one), str(tmp_path / "gone.mp4")],
            "label": ["a", "b", "c", "a"],
            "video_id": ["one", "two", "one-again", "gone"],
        }
    ).to_csv(csv, index=False)
    summary = extract_features(
        read_manifest(csv, skip_missing=True), tmp_path / "s.h5", backbone, CONFIG, progress=False
    )
    assert (summary.new, summary.failed, summary.missing, summary.exit_code) == (3, 0, 1, 1)
    assert "3 new videos ok" in summary.line() and "1 missing files" in summary.line()
    videos = store.read_videos(tmp_path / "s.h5")
    assert list(videos["video_id"]) == ["one", "two", "one-again"] and list(videos["label"]) == ["a", "b", "c"]
    assert videos["offset"][0] == videos["offset"][2]  # extracted once, stored under both ids
    failures = store.read_failures(tmp_path / "s.h5")
    assert list(failures["video_id"]) == ["gone"] and list(failures["stage"]) == ["missing"]
    assert len(videos) + len(failures) == 4  # every manifest row is stored or a failure


cli = run_cli


@pytest.mark.slow
def test_kill_9_then_rerun_equals_an_unbroken_run(tmp_path, make_video):
    clips = [make_video(f"v{i:02d}.mp4", frames=24, width=96, height=72, seed=i) for i in range(24)]
    csv = manifest_csv(tmp_path / "m.csv", [(str(c), f"c{i % 3}") for i, c in enumerate(clips)])
    options = [
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
        "--shard-size",
        "1",
        "--workers",
        "1",
        "--no-progress",
    ]
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "features", *options, "--out-dir", str(killed_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline and len(list(killed_dir.glob("m/*.parts/run-*/*.h5"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stores = list(killed_dir.glob("m/*.h5"))
    assert not stores or len(store.read_videos(stores[0])) < 24, "the run finished before it could be killed"

    resumed = cli("features", *options, "--out-dir", str(killed_dir))
    assert resumed.returncode == 0, resumed.stderr
    assert "24 videos in manifest" in resumed.stderr
    unbroken = cli("features", *options, "--out-dir", str(tmp_path / "unbroken"))
    assert unbroken.returncode == 0, unbroken.stderr

    first, second = Path(resumed.stdout.strip()), Path(unbroken.stdout.strip())
    a, b = store.read_videos(first), store.read_videos(second)
    pd.testing.assert_frame_equal(a, b)
    with h5py.File(first, "r") as x, h5py.File(second, "r") as y:
        for name in ("features", "frame_index", "timestamps"):
            np.testing.assert_allclose(x[name][:], y[name][:], rtol=1e-3)


def test_cli_exit_codes_summary_and_inspect(shared, tmp_path, make_video):
    csv = manifest_csv(
        tmp_path / "m.csv", [(str(make_video("ok.mp4")), "a"), (str(BROKEN / "Megamind_is_html.avi"), "b")]
    )
    options = [
        "--backbone",
        "vgg16",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--no-progress",
        "--out-dir",
        str(tmp_path / "f"),
    ]
    result = cli("features", "--manifest", str(csv), *options)
    assert result.returncode == 1
    assert "1 new videos ok, 1 failed" in result.stderr and "frames/s" in result.stderr
    path = result.stdout.strip()
    shown = cli("inspect", path)
    assert shown.returncode == 0
    assert "backbone: vgg16" in shown.stdout and "failures: 1" in shown.stdout and "HTML" in shown.stdout

    bad = manifest_csv(tmp_path / "bad.csv", [(str(tmp_path / "gone.mp4"), "a")])
    refused = cli("features", "--manifest", str(bad), *options)
    assert refused.returncode == 2 and "line 2, column 'path': file not found" in refused.stderr

    constant = cli(
        "features",
        "--manifest",
        str(csv),
        "--backbone",
        "mobilenet_v2",
        "--weights",
        "none",
        "--image-size",
        "32",
        "--no-progress",
        "--out-dir",
        str(tmp_path / "g"),
    )
    assert constant.returncode == 2 and "same features for different frames" in constant.stderr
    assert not list((tmp_path / "g").glob("*/*.h5"))
    assert cli("features", "--help").returncode == 0 and cli("inspect", str(tmp_path / "none.h5")).returncode == 2


@pytest.mark.slow
def test_offline_fallback_is_announced_and_recorded(tmp_path, make_video, monkeypatch):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video(f"v{i}.mp4", seed=i)), "a") for i in range(2)])
    env = {
        **os.environ,
        "KERAS_HOME": str(tmp_path / "keras"),
        "https_proxy": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    result = cli(
        "features",
        "--manifest",
        str(csv),
        "--fallback",
        "--sampling",
        "uniform:2",
        "--precision",
        "float32",
        "--no-progress",
        "--out-dir",
        str(tmp_path / "f"),
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "offline fallback" in result.stderr
    attrs = store.read_attrs(result.stdout.strip())
    assert attrs["feature_config"]["backbone"] == "vgg16" and attrs["feature_config"]["weights"] == "none"
    assert attrs["feature_config"]["image_size"] == 112 and "ImageNet weights" in attrs["fallback"]
    assert (
        attrs["feature_config"]["precision"] == "float32"
    )  # as asked: the fallback backbone does not re-resolve it as `auto`


@pytest.mark.slow
def test_two_concurrent_runs_on_one_store_both_store_every_video(tmp_path, make_video):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video(f"v{i}.mp4", seed=i)), f"c{i % 2}") for i in range(8)])
    options = [
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
        "--shard-size",
        "1",
        "--workers",
        "1",
        "--no-progress",
        "--out-dir",
        str(tmp_path / "f"),
    ]
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=300) for process in runs]
    for process, (out, err) in zip(runs, outputs):
        assert process.returncode == 0, err
    assert outputs[0][0] == outputs[1][0]
    path = Path(outputs[0][0].strip())
    videos = store.read_videos(path)
    assert (
        sorted(videos["video_id"]) == sorted(str(tmp_path / f"v{i}.mp4") for i in range(8))
        and videos["video_id"].is_unique
    )
    assert not store.parts_dir(path).exists()  # nothing of either run left behind
    with h5py.File(path, "r") as f:
        assert np.isfinite(f["features"][:].astype(np.float32)).all() and f["features"].shape[0] >= 32


@pytest.mark.slow
def test_truncated_store_is_named_and_recovered(tmp_path, make_video):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video(f"v{i}.mp4", seed=i)), f"c{i % 2}") for i in range(3)])
    options = [
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
        "--no-progress",
        "--out-dir",
        str(tmp_path / "f"),
    ]
    first = cli("features", *options)
    assert first.returncode == 0, first.stderr
    path = Path(first.stdout.strip())
    path.write_bytes(path.read_bytes()[:1000])
    broken = cli("features", *options)
    assert broken.returncode == 2 and "Traceback" not in broken.stderr
    assert f"the feature store {path} cannot be read" in broken.stderr and f"compact {path} --recover" in broken.stderr
    assert cli("inspect", str(path)).returncode == 2
    recovered = cli("compact", str(path), "--recover")
    assert recovered.returncode == 0, recovered.stderr
    synced = cli("features", *options)
    assert synced.returncode == 0 and "3 already stored" in synced.stderr, synced.stderr
    assert len(store.read_videos(path)) == 3


def test_an_unexpected_error_exits_3_with_one_line(tmp_path, make_video, monkeypatch, caplog):
    from pipeline import cli as command_line
    from pipeline.extract import run as extract

    def broken(*args, **kwargs):
        raise RuntimeError("something nobody expected")

    monkeypatch.setattr(extract, "extract_features", broken)
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video("v.mp4")), "a")])
    code = command_line.main(
        [
            "features",
            "--manifest",
            str(csv),
            "--backbone",
            "vgg16",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--no-progress",
            "--out-dir",
            str(tmp_path / "f"),
        ]
    )
    assert code == command_line.EXIT_UNEXPECTED == 3
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "RuntimeError: something nobody expected" in errors[0] and "--verbose" in errors[0]
    assert "Traceback" not in caplog.text


def test_manifest_rows_neither_stored_nor_failed_are_counted_and_exit_1(tmp_path, make_video, backbone, monkeypatch):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video(f"v{i}.mp4", seed=i)), "a") for i in range(2)])
    merge = store.merge_shards

    def losing_one(*args, **kwargs):  # a merge that leaves a row out (the race a live run once lost rows to)
        report = merge(*args, **kwargs)
        return store.SyncReport(report.stored - 1, report.failed)

    monkeypatch.setattr(store, "merge_shards", losing_one)
    summary = run(csv, tmp_path / "s.h5", backbone)
    assert (summary.new, summary.failed, summary.unaccounted, summary.exit_code) == (1, 0, 1, 1)
    assert "1 neither stored nor failed" in summary.line()


def test_features_refuses_a_store_missing_a_segment_naming_it(tmp_path, make_video, backbone):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video("v.mp4")), "a")])
    path = tmp_path / "s.h5"
    run(csv, path, backbone)
    for segment in store.segments_dir(path).iterdir():
        segment.unlink()  # the .h5 copied without its folder
    with pytest.raises(store.StoreError, match="lacks 1 segment file.*compact .* --recover"):
        run(csv, path, backbone)
    shown = cli("inspect", str(path))
    assert shown.returncode == 2 and "MISSING segment file" in shown.stdout and "--recover" in shown.stderr


def test_an_out_dir_that_is_a_file_is_refused_naming_the_option(tmp_path, make_video):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video("v.mp4")), "a")])
    (tmp_path / "taken").write_text("a file\n")
    result = cli(
        "features", "--manifest", str(csv), "--weights", "none", "--out-dir", str(tmp_path / "taken"), "--no-progress"
    )
    assert result.returncode == 2 and f"--out-dir: {tmp_path / 'taken'} is not a folder" in result.stderr, result.stderr
