"""Runs from anyone: planted links are replaced, never written or read through; malformed run files are refused
naming the file and field; a rerun or an overwrite loses nothing the user had (issue 26, items 1, 5, 6, 11-13)."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.train import train
from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK
from pipeline.core import atomic
from pipeline.core.errors import InputError
from pipeline.extract.config import FeatureConfig
from pipeline.report import index
from pipeline.report.classification import CONFIG_TYPES, METRIC_TYPES
from pipeline.runs import folders

from helpers import TINY_CONFIG, write_store

REPO = Path(__file__).resolve().parents[1]
SETTINGS = "# my shell settings\nexport EDITOR=vi\n"
CLASSES = ["video", "label", "status"]  # class names that are also column names of predict's tables


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("hostile") / "features" / "toy" / "toy.h5", ["up", "down"] * 8)


@pytest.fixture(scope="module")
def report_run(store_path):
    """A trained run with a sequence model (curves) and a baseline, as the attacks start from."""
    config = TrainConfig(models=("gru", "mean"), seq_len=8, epochs=1, network=SequenceModelConfig(units=4))
    return train(store_path, store_path.parents[2] / "reports" / "toy", config, progress=False).run_dir


@pytest.fixture(scope="module")
def predict_run(tmp_path_factory):
    """A run `predict` can use (random VGG16 at 32 px, 4 frames a video), whose classes are named like columns."""
    root = tmp_path_factory.mktemp("predict")
    features = TINY_CONFIG.to_dict()
    store = write_store(
        root / "features" / "c" / "c.h5", CLASSES * 4, lengths=[4] * 12, dim=512, feature_config=features
    )
    return train(store, root / "run", TrainConfig(models=("mean",), seq_len=4), progress=False).run_dir


def victim(tmp_path: Path, name: str = "bashrc") -> Path:
    """A file of the user's that a planted link points at."""
    path = tmp_path / name
    path.write_text(SETTINGS)
    return path


def plant(link: Path, target: Path) -> None:
    link.unlink(missing_ok=True)
    link.symlink_to(target)


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def predict_args(run: Path, *videos, extra=()) -> list[str]:
    return ["predict", str(run), *map(str, videos), "--workers", "1", "--no-progress", *extra]


# --- item 1: writes never follow planted links -----------------------------------------------------------------


def test_report_replaces_planted_links_and_no_planted_command_runs(report_run, tmp_path):
    bashrc, photo = victim(tmp_path), tmp_path / "photo.png"
    photo.write_bytes(b"my photo")
    evil = tmp_path / "evil"
    run = shutil.copytree(report_run, evil / "run")
    config = json.loads((run / "model" / "config.json").read_text())
    (run / "model" / "config.json").write_text(json.dumps({**config, "dataset": "x; touch PWNED; true"}))
    planted = ["report.md", "index.html", "gru-curves.png", "run.json", "mean-confusion.csv"]
    for name in planted:
        plant(run / name, bashrc)
        plant(run / f".{name}.{os.getpid()}.tmp", bashrc)  # the temporary names an earlier version used
    plant(run / "run.json", Path(os.path.relpath(bashrc, run)))  # a relative link works the same
    (run / "mean-confusion.png").unlink()
    os.link(photo, run / "mean-confusion.png")  # a hard link: writing into it would change the user's photo
    plant(evil / folders.MARKER, bashrc)  # the report root's marker
    plant(evil / f".index.html.{os.getpid()}.tmp", bashrc)

    assert main(["report", str(run)]) == EXIT_OK
    assert bashrc.read_text() == SETTINGS and photo.read_bytes() == b"my photo"
    for name in [*planted, "mean-confusion.png"]:
        assert (run / name).is_file() and not (run / name).is_symlink(), name
    assert "touch PWNED" in (run / "report.md").read_text()  # the report is written, into the run
    assert not (evil / folders.MARKER).is_symlink() and folders.made_by_tool(evil, "reports")
    assert "run/index.html" in (evil / "index.html").read_text()
    subprocess.run(["bash", str(bashrc)], cwd=tmp_path, check=True)  # the user's next shell
    assert not (tmp_path / "PWNED").exists()


def test_train_into_a_folder_whose_marker_is_a_planted_link(store_path, tmp_path):
    bashrc = victim(tmp_path)
    parent = tmp_path / "parent"
    parent.mkdir()
    plant(parent / folders.MARKER, bashrc)
    plant(parent / f".{folders.MARKER}.{os.getpid()}.tmp", bashrc)
    plant(parent / f".index.html.{os.getpid()}.tmp", bashrc)
    argv = ["train", "--store", str(store_path), "--model", "mean", "--run", str(parent / "x"), "--no-progress"]
    assert main(argv) == EXIT_OK
    assert bashrc.read_text() == SETTINGS
    assert folders.made_by_tool(parent, "reports") and not (parent / folders.MARKER).is_symlink()
    assert "x/index.html" in (parent / "index.html").read_text() and folders.made_by_tool(parent / "x", "run")


def test_a_symlinked_index_in_a_folder_the_tool_did_not_mark_is_left_alone(store_path, tmp_path, caplog):
    bashrc = victim(tmp_path)
    parent = tmp_path / "parent"
    parent.mkdir()
    plant(parent / "index.html", bashrc)
    argv = ["train", "--store", str(store_path), "--model", "mean", "--run", str(parent / "x"), "--no-progress"]
    assert main(argv) == EXIT_OK
    assert bashrc.read_text() == SETTINGS and (parent / "index.html").is_symlink()
    assert f"not writing the runs index {parent / 'index.html'}" in caplog.text and "symbolic link" in caplog.text
    folders.mark(parent, "reports")  # in a report root of the tool's, the link is replaced by the index
    assert main([*argv[:-2], str(parent / "y"), "--no-progress"]) == EXIT_OK
    assert bashrc.read_text() == SETTINGS and not (parent / "index.html").is_symlink()
    assert "y/index.html" in (parent / "index.html").read_text()


def test_atomic_writes_replace_a_link_and_never_write_through_a_planted_temporary(tmp_path):
    bashrc = victim(tmp_path)
    page = tmp_path / "page.html"
    plant(page, bashrc)
    plant(tmp_path / ".clip.tmp.mp4", bashrc)  # a caller's own temporary name, planted in advance
    atomic.write_text(page, "new page")
    with atomic.replacing(tmp_path / "clip.mp4", tmp_path / ".clip.tmp.mp4") as temporary:
        temporary.write_bytes(b"video")
    assert bashrc.read_text() == SETTINGS and page.read_text() == "new page" and not page.is_symlink()
    assert (tmp_path / "clip.mp4").read_bytes() == b"video"
    assert page.stat().st_mode & 0o777 == 0o666 & ~atomic.umask()  # not mkstemp's private 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bashrc", "clip.mp4", "page.html"]


# --- item 1: reading a run never follows links out of it ------------------------------------------------------


@pytest.mark.parametrize("name", ["model/config.json", "model/metrics.json", "model/labels.json", "model/splits.csv"])
def test_report_refuses_a_run_file_that_is_a_link(report_run, tmp_path, caplog, name):
    run = shutil.copytree(report_run, tmp_path / "reports" / "received")
    outside = tmp_path / "outside"
    shutil.copyfile(run / name, outside)  # the same content: only the link is wrong
    plant(run / name, outside)
    before = snapshot(run)
    assert main(["report", str(run)]) == EXIT_BAD_INPUT
    assert f"{run / name} is a symbolic link (to {outside})" in caplog.text
    assert snapshot(run) == before


def test_report_refuses_a_linked_model_folder_a_fifo_and_a_linked_run(report_run, tmp_path):
    elsewhere = shutil.copytree(report_run, tmp_path / "elsewhere")
    linked_model = shutil.copytree(report_run, tmp_path / "reports" / "linked-model")
    shutil.rmtree(linked_model / "model")
    (linked_model / "model").symlink_to(elsewhere / "model")
    fifo = shutil.copytree(report_run, tmp_path / "reports" / "fifo")
    (fifo / "model" / "history.csv").unlink()
    os.mkfifo(fifo / "model" / "history.csv")  # reading it would wait for a writer forever
    (tmp_path / "reports" / "link").symlink_to(elsewhere)
    before = snapshot(elsewhere)
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "report", *(str(tmp_path / "reports" / n) for n in ("linked-model", "fifo"))]
        + [str(tmp_path / "reports" / "link")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == EXIT_BAD_INPUT, result.stderr
    assert f"{linked_model / 'model'} is a symbolic link" in result.stderr
    assert f"{fifo / 'model' / 'history.csv'} is not a plain file" in result.stderr
    assert f"{tmp_path / 'reports' / 'link'} is a symbolic link (to {elsewhere})" in result.stderr
    assert "3 of 3 runs could not be reported" in result.stderr and snapshot(elsewhere) == before


def test_runs_index_lists_no_run_through_a_link(report_run, tmp_path, caplog):
    root = tmp_path / "reports"
    shutil.copytree(report_run, root / "real")
    folders.mark(root, "reports")
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"kind": "classification", "dataset": "SECRET-DATASET", "created": "2099"}))
    planted = shutil.copytree(report_run, root / "planted")
    plant(planted / "run.json", secret)
    other = tmp_path / "other"
    other.mkdir()
    (other / "run.json").write_text(secret.read_text())
    (root / "linked").symlink_to(other)
    page = index.write_index(root).read_text()
    assert "real/index.html" in page and "SECRET-DATASET" not in page
    assert f"{planted / 'run.json'} is a symbolic link" in caplog.text
    assert f"{root / 'linked'} is a symbolic link" in caplog.text


def test_two_reports_of_one_run_at_once_both_finish_whole(report_run, tmp_path):
    run = shutil.copytree(report_run, tmp_path / "reports" / "run")
    command = [sys.executable, "-m", "pipeline", "report", str(run)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    reports = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    assert [report.wait(timeout=180) for report in reports] == [EXIT_OK, EXIT_OK]
    for page in (run / "index.html", tmp_path / "reports" / "index.html"):
        assert page.read_text().endswith("</body></html>")
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers and json.loads((run / "run.json").read_text())["kind"] == "classification"


# --- item 5: an interrupted predict keeps the previous outputs ------------------------------------------------

INTERRUPTIBLE = """
import functools, sys
sys.path.insert(0, {tests!r})
import fault_hooks
import pipeline.predict.videos as videos
videos.predict_videos = functools.partial(videos.predict_videos, decode_hook=fault_hooks.inject)
from pipeline.cli import main
if __name__ == "__main__":  # the decoder processes import this module too
    sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_predict_keeps_old_outputs_and_the_finished_videos(predict_run, tmp_path, make_video):
    good, second = make_video("good.mp4", seed=1), make_video("second.mp4", seed=2)
    hang = make_video("hang.mp4", seed=3)  # its decoder spins (fault_hooks.inject): Ctrl-C comes while it decodes
    run = shutil.copytree(predict_run, tmp_path / "run")
    assert main(predict_args(run, good, second)) == EXIT_OK
    old = snapshot(run / "predictions")
    assert set(old) == {folders.MARKER, "predictions.csv", "predictions.json"}

    driver = tmp_path / "driver.py"
    driver.write_text(INTERRUPTIBLE.format(tests=str(REPO / "tests")))
    process = subprocess.Popen(
        [sys.executable, str(driver), *predict_args(run, second, hang, good, extra=("--timeout", "60"))],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches it
    )
    try:
        first = process.stdout.readline()  # `second` is classified and printed at once
        deadline = time.monotonic() + 60
        while not hang.with_suffix(".hanging").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert first.startswith(f"{second}\t") and process.returncode == EXIT_INTERRUPTED, stderr
    kept = run / "predictions" / "predictions.partial.jsonl"
    assert {name: data for name, data in snapshot(run / "predictions").items() if name != kept.name} == old
    assert kept.exists(), stderr
    rows = [json.loads(line) for line in kept.read_text().splitlines()]
    assert [(row["video"], row["status"]) for row in rows] == [(str(second), "ok")]
    assert f"the results of the 1 videos finished before the end are in {kept}" in stderr

    assert main(predict_args(run, good)) == EXIT_OK  # the next run replaces the outputs and clears the partial file
    assert not kept.exists() and len(pd.read_csv(run / "predictions" / "predictions.csv")) == 1


def test_interrupted_reruns_add_to_the_rows_kept_and_a_finished_run_clears_them(tmp_path):
    from pipeline.predict.outputs import partial_results, prepare_output

    out = prepare_output(tmp_path / "p")
    kept = out / "predictions.partial.jsonl"
    for rows in (["a.mp4"], [], ["b.mp4"]):  # the second is interrupted before any video finished
        with pytest.raises(KeyboardInterrupt), partial_results(out) as keep:
            for video in rows:
                keep({"video": video, "status": "ok"})
            raise KeyboardInterrupt
    assert [json.loads(line)["video"] for line in kept.read_text().splitlines()] == ["a.mp4", "b.mp4"]
    bashrc = victim(tmp_path)
    plant(kept, bashrc)
    with partial_results(out) as keep:
        keep({"video": "c.mp4", "status": "ok"})
        assert json.loads(kept.read_text())["video"] == "c.mp4" and not kept.is_symlink()
    assert not kept.exists() and bashrc.read_text() == SETTINGS


# --- item 6: --overwrite deletes nothing of the user's --------------------------------------------------------


def test_overwrite_refuses_a_run_holding_the_users_files_before_training(store_path, tmp_path, monkeypatch, caplog):
    import pipeline.classify.train

    run = tmp_path / "reports" / "run"
    argv = ["train", "--store", str(store_path), "--model", "mean", "--run", str(run), "--no-progress"]
    assert main(argv) == EXIT_OK
    (run / "notes.txt").write_text("my notes")
    (run / "model" / "my_results.csv").write_text("a,b\n")
    (run / "analysis").mkdir()
    before = snapshot(run)

    def no_training(*args, **kwargs):
        raise AssertionError("trained before refusing")

    monkeypatch.setattr(pipeline.classify.train, "_train_into", no_training)
    assert main([*argv, "--overwrite"]) == EXIT_BAD_INPUT
    assert (
        "holds files a run never writes, which replacing it would delete: analysis/, notes.txt, model/my_results.csv;"
        in (caplog.text)
    )
    assert snapshot(run) == before and (run / "analysis").is_dir()
    assert sorted(p.name for p in run.parent.iterdir()) == [folders.MARKER, "index.html", "run"]

    monkeypatch.undo()
    for name in ("notes.txt", "model/my_results.csv"):
        (run / name).unlink()
    (run / "analysis").rmdir()
    (run / ".index.html.k2j4abcd.tmp").write_text("left by a killed report")  # the tool's own leftovers go
    assert main([*argv, "--overwrite"]) == EXIT_OK and not (run / ".index.html.k2j4abcd.tmp").exists()


def test_convlstm_overwrite_refuses_the_users_files_the_same_way(tmp_path, monkeypatch):
    import pipeline.nextframe.run as nextframe_run
    from pipeline.nextframe.config import ConvLSTMConfig

    run = tmp_path / "convlstm-sklearn"
    (run / "model").mkdir(parents=True)
    folders.mark(run, "run")
    for name in ("model/config.json", "model/metrics.json", "index.html", "example_0.gif"):
        (run / name).write_text("{}")
    (run / "notes.txt").write_text("my notes")

    def no_data(*args, **kwargs):
        raise AssertionError("read data before refusing")

    monkeypatch.setattr(nextframe_run, "moving_mnist", no_data)
    with pytest.raises(folders.FolderError, match=r"would delete: notes\.txt; move them out"):
        nextframe_run.run_convlstm(ConvLSTMConfig(), run, overwrite=True)
    assert (run / "notes.txt").read_text() == "my notes"


# --- item 11: class names that are column names ----------------------------------------------------------------


def test_classes_named_like_columns_predict_whole_and_in_windows(predict_run, tmp_path, make_video):
    clip = make_video("clip.mp4", frames=20, seed=4)
    out = tmp_path / "out"
    assert main(predict_args(predict_run, clip, extra=("--window", "0.5", "--output", str(out)))) == EXIT_OK
    windows = pd.read_csv(out / "windows.csv", keep_default_na=False)
    labels = sorted(CLASSES)
    assert list(windows["video"].unique()) == [str(clip)] and len(windows) == 4  # 20 frames at 10 fps: 4 windows
    assert set(windows["label"]) <= set(labels) and set(windows["smoothed_label"]) <= set(labels)
    probabilities = windows[[f"p_{label}" for label in labels]]
    assert ((probabilities.sum(axis=1) - 1).abs() < 1e-4).all()
    assert [f"smoothed:{label}" for label in labels] == [c for c in windows.columns if c.startswith("smoothed:")]
    videos = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert list(videos["status"]) == ["ok"] and videos.loc[0, "label_1"] in labels
    assert (out / "timeline-000-clip.png").stat().st_size > 1000


# --- item 12: report skips a malformed run and reports the rest ------------------------------------------------


def test_report_skips_malformed_runs_naming_the_file_and_reports_the_rest(report_run, tmp_path, caplog, capsys):
    root = tmp_path / "reports"
    train_five = shutil.copytree(report_run, root / "a-train")
    config = json.loads((train_five / "model" / "config.json").read_text())
    (train_five / "model" / "config.json").write_text(json.dumps({**config, "train": 5}))
    per_class = shutil.copytree(report_run, root / "b-per-class")
    metrics = json.loads((per_class / "model" / "metrics.json").read_text())
    metrics["gru"]["per_class"] = [1, 2]
    (per_class / "model" / "metrics.json").write_text(json.dumps(metrics))
    good = shutil.copytree(report_run, root / "c-good")
    assert main(["report", "--reports", str(root)]) == EXIT_BAD_INPUT
    assert capsys.readouterr().out.split() == [str(good / "index.html")]
    assert f"{train_five / 'model' / 'config.json'}: field 'train' is a JSON integer, not the object" in caplog.text
    assert f"{per_class / 'model' / 'metrics.json'}: model 'gru' field 'per_class' is a JSON array" in caplog.text
    assert "2 of 3 runs could not be reported" in caplog.text


def wrong_values(types) -> list:
    """JSON values of every type that `types` (a type or tuple of `check_fields`) does not allow."""
    allowed = types if isinstance(types, tuple) else (types,)
    candidates = [5, 2.5, True, "x", [1, 2], {"a": 1}, None]
    return [
        value
        for value in candidates
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed)
    ]


def test_every_field_of_the_wrong_type_is_refused_with_exit_2(report_run, tmp_path, caplog):
    """Every field the report reads, set to every JSON type it is not: exit 2 naming the file, never exit 3."""
    run = shutil.copytree(report_run, tmp_path / "reports" / "run")
    config_path, metrics_path = run / "model" / "config.json", run / "model" / "metrics.json"
    config, metrics = json.loads(config_path.read_text()), json.loads(metrics_path.read_text())
    cases = [
        (config_path, {**config, key: value}) for key, kind in CONFIG_TYPES.items() for value in wrong_values(kind)
    ]
    cases += [
        (metrics_path, {**metrics, "gru": {**metrics["gru"], key: value}})
        for key, kind in METRIC_TYPES.items()
        for value in wrong_values(kind)
    ]
    cases += [
        (config_path, {**config, "train": {**config["train"], "network": 3}}),
        (config_path, {**config, "failures": [1, 2]}),
        (metrics_path, {**metrics, "mean": {**metrics["mean"], "per_class": {"up": 1}}}),
        (metrics_path, {**metrics, "mean": {**metrics["mean"], "accuracy": None}}),  # tested, so a number
        (run / "model" / "labels.json", ["up", "up"]),
    ]
    for path, content in cases:
        original = path.read_text()
        path.write_text(json.dumps(content))
        caplog.clear()
        assert main(["report", str(run)]) == EXIT_BAD_INPUT, (path.name, content)
        assert str(path) in caplog.text, caplog.text
        path.write_text(original)
    (run / "model" / "splits.csv").write_text("video_id,label\nv000,up\n")
    assert main(["report", str(run)]) == EXIT_BAD_INPUT and "splits.csv has no column split" in caplog.text


# --- item 13: a run config predict cannot use is refused before decoding --------------------------------------


def edit_json(path: Path, change) -> None:
    value = json.loads(path.read_text())
    change(value)
    path.write_text(json.dumps(value))


@pytest.mark.parametrize(
    "file, change, message",
    [
        ("config.json", lambda c: c["feature_config"].update(crop="diagonal"), "feature_config: crop 'diagonal'"),
        ("config.json", lambda c: c["feature_config"].update(image_size="big"), "field 'image_size' is a JSON string"),
        ("config.json", lambda c: c["feature_config"].update(shards=2), "feature_config has 'shards', which this"),
        ("config.json", lambda c: c["sequence"].update(seq_len=5), "seq_len 5 is more than the 4 frames per video"),
        (
            "config.json",
            lambda c: c["sequence"].update(seq_len=10**9),
            "1000000000",
        ),  # refused here or by SequenceConfig
        ("labels.json", lambda labels: labels.pop(), "names 2 classes, but model mean"),
    ],
)
def test_predict_refuses_an_unusable_run_config_before_decoding(predict_run, tmp_path, caplog, file, change, message):
    run = shutil.copytree(predict_run, tmp_path / "run")
    edit_json(run / "model" / file, change)
    assert main(predict_args(run, tmp_path / "never-read.mp4")) == EXIT_BAD_INPUT
    assert f"{run / 'model' / file}" in caplog.text and message in caplog.text
    assert not (run / "predictions").exists()  # refused before the output folder, let alone a video


def test_predict_refuses_a_huge_image_size_once_feature_config_bounds_it(predict_run, tmp_path, caplog):
    try:
        FeatureConfig(**{**TINY_CONFIG.to_dict(), "image_size": 20000})
        pytest.skip("FeatureConfig has no upper bound on image_size yet (issue 26, item 10)")
    except InputError:
        pass
    run = shutil.copytree(predict_run, tmp_path / "run")
    edit_json(run / "model" / "config.json", lambda c: c["feature_config"].update(image_size=20000))
    assert main(predict_args(run, tmp_path / "never-read.mp4")) == EXIT_BAD_INPUT
    assert f"{run / 'model' / 'config.json'}: feature_config: " in caplog.text and "20000" in caplog.text


@pytest.mark.parametrize("option", ["--top-k", "--smooth"])
def test_predict_refuses_a_count_below_one(predict_run, tmp_path, caplog, option):
    assert main(predict_args(predict_run, tmp_path / "x.mp4", extra=(option, "0"))) == EXIT_BAD_INPUT
    assert f"{option} 0: give a whole number of at least 1" in caplog.text


# --- item 1 (outputs): predict's folder and the run it reads --------------------------------------------------


def test_predict_replaces_links_in_its_output_folder_and_never_writes_through_a_linked_run(
    predict_run, tmp_path, make_video, caplog
):
    bashrc = victim(tmp_path)
    clip = make_video("clip.mp4", seed=5)
    run = shutil.copytree(predict_run, tmp_path / "run")
    assert main(predict_args(run, clip)) == EXIT_OK
    for name in ("predictions.csv", "predictions.json", "predictions.partial.jsonl"):
        plant(run / "predictions" / name, bashrc)
    assert main(predict_args(run, clip)) == EXIT_OK
    assert bashrc.read_text() == SETTINGS
    assert (
        not (run / "predictions" / "predictions.csv").is_symlink()
        and not (run / "predictions" / "predictions.partial.jsonl").exists()
    )

    plant(run / "predictions" / folders.MARKER, bashrc)  # no longer the tool's folder: refused, nothing written
    assert main(predict_args(run, clip)) == EXIT_BAD_INPUT and bashrc.read_text() == SETTINGS

    plant(run / "model" / "mean.npz", predict_run / "model" / "mean.npz")
    assert main(predict_args(run, clip, extra=("--output", str(tmp_path / "o")))) == EXIT_BAD_INPUT
    assert f"{run / 'model' / 'mean.npz'} is a symbolic link" in caplog.text

    (tmp_path / "link").symlink_to(predict_run)
    before = snapshot(predict_run)
    assert main(predict_args(tmp_path / "link", clip)) == EXIT_BAD_INPUT
    assert f"{tmp_path / 'link'} is a symbolic link (to {predict_run}): not writing predictions through it" in (
        caplog.text
    )
    assert snapshot(predict_run) == before
    assert main(predict_args(tmp_path / "link", clip, extra=("--output", str(tmp_path / "o")))) == EXIT_OK
