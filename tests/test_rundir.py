"""Commands delete or overwrite only what they made: run directories, demo folders, report roots."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.train import train
from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_OK
from pipeline.runs import folders

from helpers import write_store

FAST = dict(seq_len=8, epochs=1, network=SequenceModelConfig(units=4))


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("rundir") / "features" / "toy" / "toy.h5", ["up", "down"] * 8)


def snapshot(folder: Path) -> dict:
    """Every file under `folder` with its bytes."""
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def train_args(store_path, run, *extra):
    return [
        "train",
        "--store",
        str(store_path),
        "--model",
        "mean",
        "--run",
        str(run),
        "--seq-len",
        "8",
        "--no-progress",
        *extra,
    ]


def test_a_foreign_folder_with_model_inside_survives_overwrite(store_path, tmp_path, caplog):
    project = tmp_path / "project"
    (project / "model").mkdir(parents=True)
    (project / "model" / "config.json").write_text("{}")
    (project / "src").mkdir()
    (project / "src" / "main.py").write_text("print('precious')")
    before = snapshot(project)
    assert main(train_args(store_path, project, "--overwrite")) == EXIT_BAD_INPUT
    assert (
        f"{project} does not look like a run directory made by this tool" in caplog.text
        and "no model/metrics.json" in caplog.text
    )
    assert snapshot(project) == before
    assert [path.name for path in tmp_path.iterdir()] == ["project"]  # no temporary sibling left either


def test_runs_of_an_earlier_version_are_recognised_by_their_exact_files(store_path, tmp_path):
    run = train(store_path, tmp_path / "reports" / "old", TrainConfig(models=("mean",), **FAST), progress=False).run_dir
    (run / folders.MARKER).unlink()  # what the previous version wrote: no marker
    (run / "predictions").mkdir()
    (run / "predictions" / "predictions.csv").write_text("video,status\n")
    assert folders.is_run_dir(run)
    train(store_path, run, TrainConfig(models=("mean",), **FAST), overwrite=True, progress=False)
    assert folders.made_by_tool(run, "run") and not (run / "predictions").exists()
    (run / folders.MARKER).unlink()
    (run / "notes.txt").write_text("mine")
    assert not folders.is_run_dir(run)
    with pytest.raises(folders.FolderError, match="it holds notes.txt, which a run never has"):
        train(store_path, run, TrainConfig(models=("mean",), **FAST), overwrite=True, progress=False)
    assert (run / "notes.txt").read_text() == "mine"


def test_a_refused_or_crashed_run_keeps_the_old_run(store_path, tmp_path, monkeypatch, caplog):
    run = tmp_path / "reports" / "run"
    assert main(train_args(store_path, run)) == EXIT_OK
    before = snapshot(run)
    assert main(train_args(store_path, run, "--overwrite", "--seq-len", "99")) == EXIT_BAD_INPUT  # refused input
    assert snapshot(run) == before

    import pipeline.classify.train

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C halfway through the new run

    monkeypatch.setattr(pipeline.classify.train, "_fit_baseline", crash)
    assert main(train_args(store_path, run, "--overwrite")) == 130
    assert snapshot(run) == before
    assert sorted(path.name for path in run.parent.iterdir()) == [folders.MARKER, "index.html", "run"]


def test_a_killed_run_keeps_the_old_run_and_the_next_run_clears_its_leftovers(store_path, tmp_path):
    run = tmp_path / "reports" / "run"
    train(store_path, run, TrainConfig(models=("mean",), **FAST), progress=False)
    before = snapshot(run)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    argv = [
        "train",
        "--store",
        str(store_path),
        "--model",
        "gru",
        "--run",
        str(run),
        "--seq-len",
        "8",
        "--epochs",
        "100000",
        "--patience",
        "100000",
        "--units",
        "4",
        "--overwrite",
        "--no-progress",
    ]
    process = subprocess.Popen([sys.executable, "-m", "pipeline", *argv], env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(run.parent.glob(".run.partial-*/model/gru.keras")) and time.monotonic() < deadline:
            time.sleep(0.2)  # wait for the first checkpoint of the new run
        assert process.poll() is None, "training ended early"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    (partial,) = run.parent.glob(".run.partial-*")
    assert snapshot(run) == before
    holding = tmp_path / "reports" / ".run.partial-live"  # a partial whose writer is alive is left alone
    with folders.staged_run(tmp_path / "elsewhere" / "run", overwrite=False) as live:
        live.rename(holding)
        train(store_path, run, TrainConfig(models=("mean",), **FAST), overwrite=True, progress=False)
        holding.rename(live)
    assert not partial.exists() and folders.made_by_tool(run, "run")


def test_a_users_index_html_beside_a_run_survives(store_path, tmp_path, caplog):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<h1>my page</h1>")
    run = train(store_path, site / "run", TrainConfig(models=("mean",), **FAST), progress=False).run_dir
    assert (run / "index.html").is_file()
    assert (site / "index.html").read_text() == "<h1>my page</h1>"
    assert f"not writing the runs index {site / 'index.html'}" in caplog.text
    assert main(["report", str(run)]) == EXIT_OK
    assert (site / "index.html").read_text() == "<h1>my page</h1>" and not (site / folders.MARKER).exists()
    notes = tmp_path / "notes"  # a folder of other things gets no index.html at all
    notes.mkdir()
    (notes / "todo.txt").write_text("x")
    train(store_path, notes / "run", TrainConfig(models=("mean",), **FAST), progress=False)
    assert not (notes / "index.html").exists()
    checkout = tmp_path / "checkout-reports"  # the repository's reports/: .gitkeep, perhaps `make bench`'s output
    (checkout / "bench").mkdir(parents=True)
    (checkout / ".gitkeep").write_text("")
    (checkout / "bench" / "bench.json").write_text("{}")
    train(store_path, checkout / "run", TrainConfig(models=("mean",), **FAST), progress=False)
    assert "run/index.html" in (checkout / "index.html").read_text()
    old_root = tmp_path / "reports"  # the runs index an earlier version wrote is its own
    old_root.mkdir()
    (old_root / "index.html").write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Runs</title>..."
    )
    (old_root / "bench").mkdir()
    train(store_path, old_root / "run", TrainConfig(models=("mean",), **FAST), progress=False)
    assert "run/index.html" in (old_root / "index.html").read_text() and folders.made_by_tool(old_root, "reports")


def test_demo_data_writes_only_into_its_own_folders(tmp_path, caplog):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "holiday.mp4").write_bytes(b"my video")
    argv = ["demo-data", "--output", str(videos), "--manifest", str(tmp_path / "demo.csv"), "--per-class", "1"]
    assert main(argv) == EXIT_BAD_INPUT
    assert f"{videos} is not empty and is not a demo folder made by this tool" in caplog.text
    assert [path.name for path in videos.iterdir()] == ["holiday.mp4"] and not (tmp_path / "demo.csv").exists()

    demo = tmp_path / "demo"
    assert main([*argv[:2], str(demo), *argv[3:]]) == EXIT_OK
    clips = snapshot(demo)
    assert len([name for name in clips if name.endswith(".mp4")]) == 6 and folders.made_by_tool(demo, "demo")
    assert main([*argv[:2], str(demo), *argv[3:]]) == EXIT_OK and snapshot(demo).keys() == clips.keys()
    (demo / folders.MARKER).unlink()  # a demo folder of an earlier version: its render stamp, no marker
    assert main([*argv[:2], str(demo), *argv[3:], "--seed", "1"]) == EXIT_OK
    assert folders.made_by_tool(demo, "demo") and snapshot(demo)["grow_000.mp4"] != clips["grow_000.mp4"]


def test_a_folder_that_appears_during_training_is_not_replaced(tmp_path):
    run = tmp_path / "run"
    with pytest.raises(
        folders.FolderError, match="exists; pass --overwrite .* The finished run is kept in .*run.finished-"
    ):
        with folders.staged_run(run, overwrite=False) as staging:
            (staging / "model").mkdir()
            (staging / "model" / "config.json").write_text("{}")
            run.mkdir()  # another command wrote there while this run trained
            (run / "notes.txt").write_text("mine")
    assert [path.name for path in run.iterdir()] == ["notes.txt"]
    (kept,) = tmp_path.glob("run.finished-*")
    assert (kept / "model" / "config.json").is_file() and folders.made_by_tool(kept, "run")


@pytest.mark.parametrize(
    "files, reason",
    [
        ({"model/config.json": "{}", "results.csv": "a,b\n", "experiment_log.csv": "x\n"}, "no model/metrics.json"),
        (
            {"model/config.json": "{}", "model/metrics.json": "{}", "model/labels.json": "[]", "results.csv": "a,b\n"},
            "it holds results.csv, which a run never has",
        ),
        (
            {
                "model/config.json": "{}",
                "model/metrics.json": "{}",
                "model/labels.json": "[]",
                "model/weights.json": "{}",
            },
            "it holds model/weights.json, which a run never has",
        ),
        (
            {"model/config.json": "{}", "model/metrics.json": "{}", "model/labels.json": "[]", "plot.png": "png"},
            "it holds plot.png, which a run never has",
        ),
    ],
)
def test_a_project_folder_that_resembles_a_run_survives_overwrite(store_path, tmp_path, files, reason):
    project = tmp_path / "project"
    for name, text in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    before = snapshot(project)
    with pytest.raises(folders.FolderError, match=reason):
        train(store_path, project, TrainConfig(models=("mean",), **FAST), overwrite=True, progress=False)
    assert snapshot(project) == before


def test_a_run_directory_gets_the_modes_of_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        with folders.staged_run(tmp_path / "run", overwrite=False) as staging:
            (staging / "model").mkdir()
    finally:
        os.umask(previous)
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("spelling", [".", "model/.."])
def test_a_run_named_by_the_current_folder_is_replaced_in_place(tmp_path, monkeypatch, spelling):
    run = tmp_path / "run"
    with folders.staged_run(run, overwrite=False) as staging:
        (staging / "report.md").write_text("old")  # a run's own files: replacing it deletes nothing of the user's
    (run / "model").mkdir()
    monkeypatch.chdir(run)
    with folders.staged_run(Path(spelling), overwrite=True) as staging:
        (staging / "new.txt").write_text("new")
    assert sorted(path.name for path in run.iterdir()) == [folders.MARKER, "new.txt"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["run"]


def test_claim_folder_refuses_a_symbolic_link(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    folders.mark(elsewhere, "predictions")  # even one of the tool's folders is not written through a link
    (tmp_path / "link").symlink_to(elsewhere)
    with pytest.raises(folders.FolderError, match="is a symbolic link"):
        folders.claim_folder(tmp_path / "link", "predictions")


def test_train_into_the_current_folder_replaces_it_and_indexes_its_parent(store_path, tmp_path, monkeypatch):
    assert main(train_args(store_path, tmp_path / "run")) == EXIT_OK
    monkeypatch.chdir(tmp_path / "run")
    assert main(train_args(store_path, ".", "--overwrite")) == EXIT_OK
    assert (tmp_path / "run" / "model" / "metrics.json").is_file() and (tmp_path / "index.html").is_file()
    assert not list(tmp_path.glob(".run.*")) and not list((tmp_path / "run").glob(".*partial*"))  # no staging left
