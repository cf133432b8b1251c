"""A training run's page as people read it: top-down, with intervals, the clips it got wrong seen as strips, a
sortable runs index, TensorBoard logs in the run; every new element escaped."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.train import train
from pipeline.report import figures, index, pages, sortable, strips
from pipeline.report.classification import write_classification_report
from pipeline.runs import folders
from pipeline.runs.verdict import noise_notes

from helpers import write_store
from test_report import HOSTILE_LABELS, assert_markdown_literal, assert_no_markup_injected, received_run


@pytest.fixture
def run(toy_run, tmp_path):
    """A copy of the session's toy run (gru, mean, single-frame), free to change."""
    return received_run(toy_run.run_dir, tmp_path, "toy-run")


def test_page_reads_top_down_with_contents_anchors_and_the_configuration_collapsed(run):
    page = (run / "index.html").read_text()
    order = [
        "<a href='../index.html'>all runs</a>",
        "Results on the test split",
        "Time order: gru against the order-blind",
        "<nav class='toc'>",
        "<h2 id='data'>",
        "<details><summary>Configuration",
        "<h2 id='model-gru-sequence'>",
        "<h2 id='model-mean-order-blind'>",
        "<h2 id='model-single-frame-order-blind'>",
    ]
    positions = [page.index(text) for text in order]
    assert positions == sorted(positions), order
    targets = re.findall(r"<a href='#([^']+)'>", page)
    assert len(targets) == 5 and all(f"id='{target}'" in page for target in targets)
    collapsed = page[page.index("<details>") : page.index("</details>")]
    assert "feature backbone" in collapsed and "network units" in collapsed  # the settings are folded away
    assert re.search(r"<td>\d\.\d{3} \[\d\.\d\d,\xa0\d\.\d\d\]</td>", page)  # scores with their intervals
    assert "95% intervals" in page and "McNemar" in page
    markdown = (run / "report.md").read_text()
    assert "Contents: [Results](#results) · [Data](#data) · [Model gru (sequence)](#model-gru-sequence)" in markdown
    assert "## Model gru (sequence)" in markdown and "### Configuration (" in markdown


@pytest.mark.parametrize("epochs", [1, 3, 40])
def test_curves_have_whole_epoch_ticks(epochs):
    loss = np.linspace(1, 0.5, epochs)
    history = pd.DataFrame({"loss": loss, "accuracy": 1 - loss, "val_loss": loss + 0.1})
    figure = figures.plot_curves(history)
    figure.canvas.draw()
    for axis in figure.axes:
        low, high = axis.get_xlim()
        ticks = [tick for tick in axis.get_xticks() if low <= tick <= high]
        assert ticks and all(float(tick).is_integer() for tick in ticks), ticks


def clips_for(run, make_video, missing=()):
    """Give the run's test videos real clips (PyAV); the videos in `missing` a path that does not exist."""
    path = run / "model" / "predictions.csv"
    predictions = pd.read_csv(path, dtype=str, keep_default_na=False)
    made = {}
    for i, video in enumerate(sorted(predictions["video_id"].unique())):
        made[video] = (
            str(run.parent / "gone" / f"{video}.mp4") if video in missing else str(make_video(f"{video}.mp4", seed=i))
        )
    predictions["path"] = predictions["video_id"].map(made)
    predictions.to_csv(path, index=False)
    return made


def shown_strips(page: str) -> list[str]:
    return re.findall(r"<img src='(strips/[0-9a-f]{16}\.jpg)'", page)


def test_misclassified_clips_show_a_strip_and_unreadable_ones_their_path(run, make_video):
    from PIL import Image

    predictions = pd.read_csv(run / "model" / "predictions.csv", dtype=str, keep_default_na=False)
    wrong = predictions[(predictions["model"] == "mean") & (predictions["true"] != predictions["predicted"])]
    assert len(wrong) >= 2, "the toy run's mean baseline gets some test videos wrong"
    gone = wrong["video_id"].iloc[0]
    made = clips_for(run, make_video, missing={gone})
    write_classification_report(run)
    page = (run / "index.html").read_text()
    shown = shown_strips(page)
    assert shown and all((run / name).is_file() for name in shown)
    with Image.open(run / shown[0]) as image:
        assert image.format == "JPEG" and image.height == strips.HEIGHT
        assert image.width <= strips.FRAMES * (strips.HEIGHT * 64 // 48 + 2)  # 8 frames of a 64x48 clip at most
    seen = wrong["video_id"].iloc[1]
    section = page[page.index("<h2 id='model-mean-order-blind'>") : page.index("<h2 id='model-single-frame")]
    tile = section[section.index(f">{seen}</a>") - 600 : section.index(f">{seen}</a>") + 300]
    assert f"href='{Path(made[seen]).as_uri()}'" in tile and "<img src='strips/" in tile  # linked to the file
    row = wrong.iloc[1]
    assert f"true {row['true']}, predicted {row['predicted']} (p {float(row['confidence']):.2f})" in tile
    assert f"p of the true class {float(row[f'p_{row.true}']):.2f}" in tile
    assert f"{made[gone]} (not readable: No such file or directory)" in page  # the path of a video that is gone
    assert "Correct examples" in page and "Misclassified test videos" in page
    assert_no_markup_injected(page)
    markdown = (run / "report.md").read_text()
    assert f"![{seen}](strips/" in markdown and f"]({Path(made[seen]).as_uri()})" in markdown
    assert_markdown_literal(markdown)

    Path(made[seen]).unlink()  # moved away since: the page says so, and its strip goes
    before = set(shown)
    write_classification_report(run)
    page = (run / "index.html").read_text()
    assert f"{made[seen]} (not readable" in page
    left = {f"strips/{path.name}" for path in (run / "strips").iterdir()}
    assert left == set(shown_strips(page)) and left < before
    assert folders.is_run_dir(run)


def test_strip_frames_are_the_frames_at_the_times_asked(make_video):
    import av

    path = make_video("clip.mp4", frames=12)  # 10 fps
    with av.open(str(path)) as container:
        decoded = [frame.to_ndarray(width=64, height=48, format="rgb24") for frame in container.decode(video=0)]
    got = strips.thumbnails(str(path), [0.0, 0.5, 1.0], height=48)
    assert len(got) == 3
    for image, index_ in zip(got, (0, 5, 10)):
        errors = [np.abs(image.astype(int) - frame.astype(int)).mean() for frame in decoded]
        assert int(np.argmin(errors)) == index_, errors
    spread = strips.thumbnails(str(path), None, count=4, height=24)  # a run without frame times: over the clip
    assert len(spread) == 4 and spread[0].shape == (24, 32, 3)


def test_a_strip_of_something_that_is_not_a_video_file_is_its_path(tmp_path, run):
    import os

    (tmp_path / "text.mp4").write_text("not a video")
    os.mkfifo(tmp_path / "fifo.mp4")  # would block a reader
    for name, why in (("text.mp4", "not readable: "), ("fifo.mp4", "not a plain file"), ("none.mp4", "No such file")):
        image, reason = strips.strip(run, str(tmp_path / name), "")
        assert image is None and why in reason, reason
    assert strips.file_link("javascript:alert(1)") == "javascript%3Aalert%281%29"  # a relative name, not a scheme
    assert strips.file_link("/v/a b#c.mp4") == "file:///v/a%20b%23c.mp4"


def test_new_page_elements_escape_hostile_labels_in_html_and_markdown():
    hostile = " ".join(HOSTILE_LABELS) + " 'quoted\" $x$"
    blocks = [
        ("h2", hostile, pages.anchor(hostile)),
        ("toc", [(hostile, pages.anchor(hostile))]),
        ("note", hostile),
        ("images", [("a'b.png", hostile)]),
        ("details", hostile, [("p", hostile), ("table", pd.DataFrame({hostile: [hostile]}))]),
        (
            "gallery",
            [
                pages.Tile(
                    "strips/0123456789abcdef.jpg", strips.file_link(f"/v/{hostile}"), hostile, (hostile, hostile)
                ),
                pages.Tile(None, strips.file_link("javascript:alert(1)"), hostile, (hostile,), f"{hostile} (gone)"),
            ],
        ),
    ]
    html_page, markdown = pages.render(hostile, blocks)
    assert_no_markup_injected(html_page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html_page and "<script>alert" not in html_page
    assert "href='javascript:" not in html_page and "&#x27;quoted&quot;" in html_page
    assert_markdown_literal(markdown)
    assert "a\\|b" in markdown and "\\$x\\$" in markdown and "](javascript:" not in markdown


def write_runs(root: Path, accuracies: dict) -> None:
    for name, accuracy in accuracies.items():
        (root / name).mkdir(parents=True)
        metrics = {"accuracy": accuracy, "accuracy_interval": [0.1, 0.95], "time_order": 0.25, "time_order_p": 0.01}
        summary = {"kind": "classification", "dataset": "d", "model": "gru", "metrics": metrics, "created": name}
        (root / name / "run.json").write_text(json.dumps(summary))
    (root / "conv").mkdir()
    (root / "conv" / "run.json").write_text(json.dumps({"kind": "convlstm", "metrics": {"rollout_mse": 0.03}}))
    folders.mark(root, "reports")


def test_runs_index_has_a_column_per_metric_and_sorts_by_numbers(tmp_path):
    root = tmp_path / "reports"
    write_runs(root, {"r1-low": 0.5, "r2-none": None, "r3-high": 0.9, "r4-text": "<b>x</b>"})
    page = index.write_index(root).read_text()
    assert_no_markup_injected(page)
    assert page.count("<table class='sortable'>") == 2 and "classification runs (4)" in page  # one table a kind
    heads = re.findall(r"<th data-key='([^']+)'>", page)
    assert heads[:6] == ["run", "dataset", "model", "features", "accuracy", "time_order"]
    assert "rollout_mse" in heads and "other" not in heads
    assert "<td data-value='0.9'>0.900<br><span class='muted'>[0.10,&nbsp;0.95]</span></td>" in page
    assert "<td data-value='0.01'>0.01</td>" in page  # McNemar p
    assert "<td data-value='0.25'>+0.250" in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert "<input type='search' id='filter'" in page and page.count(sortable.SCRIPT) == 1


@pytest.mark.skipif(not shutil.which("node"), reason="node is not installed")
def test_the_index_scripts_comparison_orders_numbers_then_text_then_empty():
    cells = [
        {"value": 0.9, "text": "0.9"},
        {"value": None, "text": "abc"},
        {"value": 10, "text": "10"},
        {"value": None, "text": ""},
        {"value": 0.5, "text": "0.5"},
        {"value": None, "text": "Abd"},
    ]
    program = sortable.SCRIPT + f"console.log(JSON.stringify({json.dumps(cells)}.sort(sortable.compare)));"
    result = subprocess.run(["node", "-e", program], capture_output=True, text=True, timeout=60, check=True)
    assert [cell["text"] for cell in json.loads(result.stdout)] == ["0.5", "0.9", "10", "abc", "Abd", ""]


@pytest.mark.skipif(not shutil.which("chromium"), reason="chromium is not installed")
def test_the_index_sorts_and_filters_in_a_browser(tmp_path):
    root = tmp_path / "reports"
    write_runs(root, {"r1-low": 0.5, "r2-none": None, "r3-high": 0.9})
    page = index.write_index(root)

    def rows(fragment: str) -> list[tuple[str, bool]]:
        command = [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            f"{page.as_uri()}#{fragment}",
        ]
        dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
        table = dom[dom.index("classification runs") :]
        table = table[: table.index("</table>")]
        return [(name, "hidden" in tr) for tr, name in re.findall(r"(<tr[^>]*>)<td><a href='?\"?([^/'\"]+)/", table)]

    assert [name for name, _ in rows("sort=accuracy&order=desc")] == ["r3-high", "r1-low", "r2-none"]
    assert [name for name, _ in rows("sort=accuracy&order=asc")] == ["r1-low", "r3-high", "r2-none"]  # empty last
    assert rows("filter=r3") == [("r3-high", False), ("r2-none", True), ("r1-low", True)]  # newest first


def test_tensorboard_logs_are_in_the_run_and_the_run_format_accepts_them(toy_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = toy_run.run_dir / "model" / "tensorboard" / "gru"
    assert sorted(path.name for path in logs.iterdir()) == ["train", "validation"]
    events = EventAccumulator(str(logs / "validation"))
    events.Reload()
    assert "epoch_loss" in events.Tags()["tensors"] and len(events.Tensors("epoch_loss")) == 2  # one per epoch
    assert not (toy_run.run_dir / "model" / "tensorboard" / "mean").exists()  # baselines have no epochs

    earlier = received_run(toy_run.run_dir, tmp_path, "unmarked")
    (earlier / folders.MARKER).unlink()  # recognised by its files alone, as a run of an earlier version is
    assert folders.is_run_dir(earlier)
    folders.check_replaceable(earlier, overwrite=True)
    for planted in ("model/tensorboard/gru/notes.txt", "strips/notes.txt"):
        (earlier / planted).parent.mkdir(parents=True, exist_ok=True)
        (earlier / planted).write_text("mine")
        with pytest.raises(folders.FolderError, match=re.escape(planted)):
            folders.check_replaceable(earlier, overwrite=True)
        (earlier / planted).unlink()


def test_a_run_of_an_earlier_version_without_intervals_still_reports(run):
    path = run / "model" / "metrics.json"
    metrics = json.loads(path.read_text())
    for values in metrics.values():
        for key in [key for key in values if key.endswith("_interval") or key in ("versus", "val_videos")]:
            del values[key]
    path.write_text(json.dumps(metrics))
    predictions = pd.read_csv(run / "model" / "predictions.csv").drop(columns="frame_times")
    predictions.to_csv(run / "model" / "predictions.csv", index=False)
    write_classification_report(run)
    page = (run / "index.html").read_text()
    assert "points of test accuracy (no interval stored)" in page and "Misclassified test videos" in page


def test_a_run_too_small_to_tell_models_apart_says_so_and_predict_does_not_pick_by_noise(tmp_path, caplog):
    """The issue's run: 19 videos, 3 of them test and 3 validation."""
    labels = ["a", "b"] * 9 + ["a"]
    splits = ["train"] * 13 + ["val"] * 3 + ["test"] * 3
    store_path = write_store(tmp_path / "features" / "toy" / "s.h5", labels, splits=splits)
    config = TrainConfig(models=("lstm", "gru", "mean"), seq_len=8, epochs=2, network=SequenceModelConfig(units=4))
    caplog.set_level("WARNING")
    result = train(store_path, tmp_path / "reports" / "tiny", config, progress=False)
    metrics = json.loads((result.run_dir / "model" / "metrics.json").read_text())
    assert metrics["lstm"]["val_videos"] == 3 and metrics["lstm"]["versus"]["mean"]["videos"] == 3
    notes = noise_notes(metrics)
    assert notes and any("is too small to tell" in note for note in notes)
    page = (result.run_dir / "index.html").read_text()
    for note in notes:
        assert note in caplog.text  # the train summary
        assert pages.warning(note) in page  # and the page, in the same words
    lstm, gru = (metrics[name]["val_accuracy_interval"] for name in ("lstm", "gru"))
    if lstm[0] <= gru[1] and gru[0] <= lstm[1]:  # inside the noise: the first trained, whatever the scores
        assert json.loads((result.run_dir / "run.json").read_text())["model"].startswith("lstm")


def test_predictions_record_the_times_of_the_frames_each_model_saw(toy_run):
    predictions = pd.read_csv(toy_run.run_dir / "model" / "predictions.csv", dtype=str, keep_default_na=False)
    # the toy store's videos have 8 frames at 10 fps, and the run's sequences are 8 steps: every frame, in order
    assert set(predictions["frame_times"]) == {" ".join(f"{frame / 10:.3f}" for frame in range(8))}
