"""Moving MNIST data and the ConvLSTM forecast, on tiny sizes."""

import contextlib
import gzip
import io
import json
import re
import struct

import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main
from pipeline.nextframe import config as nf_config
from pipeline.nextframe import model as nf_model
from pipeline.nextframe import moving_mnist as mm
from pipeline.nextframe import run as cl
from pipeline.nextframe import scores as cs
from pipeline.nextframe.report import plot_per_frame
from pipeline.report import pages
from pipeline.runs import folders

from helpers import DIGITS


def test_generated_sequences_have_the_original_layout_and_bounce():
    digits = np.full((3, mm.DIGIT, mm.DIGIT), 200, np.uint8)
    frames = mm.generate_moving_mnist(digits, sequences=4, seed=0)
    mm.check_layout(frames)
    assert frames.shape == (20, 4, 64, 64)
    lit = (frames > 0).sum(axis=(2, 3))
    assert (lit >= mm.DIGIT * mm.DIGIT).all()  # two 28x28 squares: at least one square's worth even when they overlap
    assert (lit <= 2 * mm.DIGIT * mm.DIGIT).all()
    assert not np.array_equal(frames[0], frames[-1])  # the digits moved


def test_trajectories_stay_inside_the_frame_and_move_at_a_fixed_speed():
    corners = mm._trajectories(np.random.default_rng(0), 200)
    assert corners.min() >= 0 and corners.max() <= mm.CANVAS - mm.DIGIT
    steps = np.abs(np.diff(corners, axis=0)).max()
    assert 1 <= steps <= np.ceil(mm.STEP * (mm.CANVAS - mm.DIGIT)) + 1


def test_generation_is_deterministic_with_a_seed():
    first, source = mm.moving_mnist("sklearn", sequences=10, seed=3)
    again, _ = mm.moving_mnist("sklearn", sequences=10, seed=3)
    other, _ = mm.moving_mnist("sklearn", sequences=10, seed=4)
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert "scikit-learn" in source and "seed 3" in source


def test_sklearn_digits_look_like_mnist():
    digits = mm.sklearn_digits()
    assert digits.shape == (1797, 28, 28) and digits.dtype == np.uint8
    assert digits.max() == 255
    assert not digits[:, :4].any() and not digits[:, -4:].any()  # a 20x20 digit centred, as in MNIST


def test_generation_from_the_shared_mnist_idx_files(shared):
    images, source = mm.read_digits(DIGITS / "t10k-images-idx3-ubyte.gz")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8 and "MNIST idx" in source
    frames, source = mm.moving_mnist(str(DIGITS), sequences=6, seed=0)
    mm.check_layout(frames)
    assert frames.shape[1] == 6 and "10000 images" in source


def test_keras_npz_and_plain_idx_digits(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=images[:3], x_test=images[3:], y_train=np.zeros(3), y_test=np.zeros(2))
    loaded, source = mm.read_digits(tmp_path / "mnist.npz")
    assert np.array_equal(loaded, images) and "mnist.npz" in source
    (tmp_path / "digits-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, 5, 28, 28) + images.tobytes())
    assert np.array_equal(mm.read_digits(tmp_path / "digits-images-idx3-ubyte")[0], images)


def test_bad_idx_files_are_refused(tmp_path):
    labels = tmp_path / "labels.gz"
    labels.write_bytes(gzip.compress(struct.pack(">II", 2049, 3) + bytes(3)))
    with pytest.raises(ValueError, match="not an idx image file"):
        mm.read_idx_images(labels)
    truncated = tmp_path / "short-images-idx3-ubyte"
    truncated.write_bytes(struct.pack(">IIII", 2051, 2, 28, 28) + bytes(100))
    with pytest.raises(ValueError, match="truncated"):
        mm.read_idx_images(truncated)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError):
        mm.read_digits(tmp_path / "empty")


def test_loading_the_npy_layout(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (20, 7, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "mnist_test_seq.npy", frames)
    loaded, source = mm.moving_mnist(str(tmp_path / "mnist_test_seq.npy"), sequences=5)
    assert np.array_equal(loaded, frames[:, :5]) and "first 5 sequences" in source
    with pytest.raises(ValueError, match="fewer than"):
        mm.load_moving_mnist(tmp_path / "mnist_test_seq.npy", sequences=8)
    np.save(tmp_path / "wrong.npy", frames.transpose(1, 0, 2, 3))
    with pytest.raises(ValueError, match="Moving MNIST layout"):
        mm.load_moving_mnist(tmp_path / "wrong.npy")


def test_model_frames_are_block_means_in_the_model_layout():
    frames = np.zeros((20, 2, 64, 64), np.uint8)
    frames[3, 1, :2, :2] = 255
    frames[3, 1, 2, 2] = 255
    small = mm.model_frames(frames, 32)
    assert small.shape == (2, 20, 32, 32, 1) and small.dtype == np.float32
    assert small[1, 3, 0, 0, 0] == 1.0 and small[1, 3, 1, 1, 0] == 0.25 and small.sum() == 1.25
    big = mm.upscale(small)
    assert big.shape == (2, 20, 64, 64, 1) and big[1, 3, :2, :2, 0].all() and big.sum() == 4 * small.sum()


def test_splits_config_validation_and_presets():
    assert mm.split_sizes(100) == (80, 10, 10)
    assert mm.split_sizes(3) == (1, 1, 1)
    with pytest.raises(ValueError, match="too few"):
        nf_config.ConvLSTMConfig(sequences=2)
    with pytest.raises(ValueError, match="frame size"):
        nf_config.ConvLSTMConfig(frame_size=24)
    paper = nf_config.preset("paper")
    assert (paper.frame_size, paper.filters, mm.split_sizes(paper.sequences)[0]) == (64, 64, 10000)
    assert (
        nf_config.preset("paper", filters=8, epochs=None).filters == 8
        and nf_config.preset("paper", epochs=None).epochs == paper.epochs
    )
    with pytest.raises(ValueError, match="unknown preset"):
        nf_config.preset("gpu")
    ramp = [nf_model.teacher_probability(epoch, nf_config.ConvLSTMConfig(epochs=6)) for epoch in range(6)]
    assert ramp == pytest.approx(
        [1, 2 / 3, 1 / 3, 0, 0, 0]
    )  # true frames for the first half of the epochs, fewer and fewer
    assert (
        nf_model.teacher_probability(0, nf_config.ConvLSTMConfig(teacher_share=0)) == 0
    )  # no scheduled sampling: own predictions from the start
    with pytest.raises(ValueError, match="teacher share"):
        nf_config.ConvLSTMConfig(teacher_share=1.5)


def test_per_frame_scores_put_three_baselines_beside_the_model():
    rng = np.random.default_rng(0)
    truth = rng.random((3, 10, 12, 12, 1)).astype(np.float32)
    last = rng.random((3, 1, 12, 12, 1)).astype(np.float32)
    mean = truth.mean(axis=1, keepdims=True)
    scores = cs.frame_scores("rollout", 10, truth, truth, copy_last=last, mean_frame=mean)
    assert list(scores.columns) == cs.PER_FRAME_COLUMNS and list(scores["frame"]) == list(range(10, 20))
    assert (scores["mse"] == 0).all() and np.allclose(scores["ssim"], 1)
    for t in range(10):  # each baseline's error, frame by frame, computed here directly
        assert scores.loc[t, "blank_mse"] == pytest.approx(float((truth[:, t] ** 2).mean()), rel=1e-6)
        assert scores.loc[t, "copy_last_mse"] == pytest.approx(
            float(((truth[:, t] - last[:, 0]) ** 2).mean()), rel=1e-6
        )
        assert scores.loc[t, "mean_frame_mse"] == pytest.approx(
            float(((truth[:, t] - mean[:, 0]) ** 2).mean()), rel=1e-6
        )
    summary = cs.summarise(scores)
    assert summary.loc[0, "mse_to_blank"] == 0 and summary.loc[0, "mse_to_best_baseline"] == 0


def test_visibility_tells_sharp_digits_from_a_grey_blob():
    truth = np.zeros((2, 3, 16, 16, 1), np.float32)
    truth[:, :, 4:8, 4:12] = 1  # a bar
    blob = np.full_like(truth, truth.mean())  # the right mass spread evenly: no edges, no ink
    shifted = np.roll(truth, 2, axis=3)  # sharp, but a quarter of it in the wrong place
    assert np.allclose(cs.visibility(truth, truth)["sharpness"], 1) and np.allclose(
        cs.visibility(truth, truth)["ink_kept"], 1
    )
    assert np.allclose(cs.visibility(truth, blob)["sharpness"], 0) and np.allclose(
        cs.visibility(truth, blob)["ink_kept"], 0
    )
    assert np.allclose(cs.visibility(truth, shifted)["sharpness"], 1) and np.allclose(
        cs.visibility(truth, shifted)["ink_kept"], 0.75
    )
    faint = cs.visibility(
        truth, truth * 0.5
    )  # the shapes, at half the contrast: a quarter of the edge energy, no pixel above INK
    assert np.allclose(faint["sharpness"], 0.25) and np.allclose(faint["ink_kept"], 0)


def test_papers_metrics_sum_over_pixels_and_frames():
    truth = np.zeros((2, 10, 64, 64, 1), np.float32)
    truth[:, :, :8, :8] = 1
    scores = cs.paper_scores(truth, np.zeros((2, 1, 64, 64, 1), np.float32))
    assert scores["mse_per_frame"] == pytest.approx(64)  # 64 lit pixels missed per frame, summed, not averaged
    assert scores["cross_entropy_per_sequence"] == pytest.approx(10 * 64 * -np.log(cs.EPSILON), rel=1e-4)
    assert cs.paper_scores(truth, truth)["ssim"] == pytest.approx(1)


def test_targets_are_checked_per_horizon():
    frames = pd.DataFrame(
        {
            "task": "rollout",
            "frame": range(10, 20),
            "mse": 0.01,
            "copy_last_mse": 0.05,
            "blank_mse": 0.04,
            "sharpness": 0.8,
            "ink_kept": 0.6,
        }
    )
    assert cs.targets(frames, 1.0)["met"].all()
    frames.loc[9, "mse"] = 0.045  # the last horizon loses to blank (0.04), still beats copy-last
    frames.loc[9, "ink_kept"] = 0.3  # and keeps too little of the digits
    missed = cs.targets(frames, 1.7)
    assert list(missed["met"]) == [False, True, True, False, False] and missed.loc[0, "measured"] == "9 of 10 frames"
    assert missed.loc[4, "measured"] == "sharpness 0.80, ink kept 0.30"


def test_the_model_is_causal_and_the_forecaster_feeds_its_predictions_back():
    import keras

    keras.utils.set_random_seed(0)
    model = nf_model.build_model(frame_size=8, filters=4)
    frames = np.random.default_rng(0).random((2, 5, 8, 8, 1)).astype(np.float32)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(frames, frames, epochs=1, verbose=0)  # TensorFlow rewrites the graph once trained: test that graph
    before = model.predict(frames, verbose=0)
    assert before.shape == frames.shape
    for t in range(5):
        changed = frames.copy()
        changed[:, t] = 0
        after = model.predict(changed, verbose=0)
        np.testing.assert_allclose(before[:, :t], after[:, :t], atol=1e-6)  # output t-1 (frame t) never sees frame t
        assert not np.allclose(before[:, t], after[:, t])  # ... and output t does, the last one included

    forecast = nf_model.forecaster(model, context=3, steps=3).predict(frames[:, :3], verbose=0)
    assert forecast.shape == (2, 5, 8, 8, 1)
    np.testing.assert_allclose(forecast[:, :3], before[:, :3], atol=1e-5)  # one-step over the context
    fed_back = frames[:, :3]
    for _ in range(3):  # the same forecast the slow way: rerun the whole sequence with each prediction appended
        fed_back = np.concatenate([fed_back, model.predict(fed_back, verbose=0)[:, -1:]], axis=1)
    np.testing.assert_allclose(forecast[:, 2:], fed_back[:, 3:], atol=1e-5)

    rollout = nf_model.forecaster(model, context=3, steps=3)
    rollout(frames, training=True)  # builds it
    rollout.teacher.assign(1.0)  # scheduled sampling's start: every forecast step is given the true frame ...
    np.testing.assert_allclose(rollout(frames, training=True), before, atol=1e-5)
    rollout.teacher.assign(0.0)  # ... and its end: every step is given the model's own prediction, as in use
    np.testing.assert_allclose(rollout(frames, training=True), forecast, atol=1e-5)


def test_the_head_builds_the_next_frame_from_the_current_frames_pixels():
    import keras

    keras.utils.set_random_seed(0)
    assert (
        nf_model.filter_size(32) == 5 and nf_model.filter_size(64) == 9
    )  # as far as a digit moves in a frame: 1.8 and 3.6 px
    model = nf_model.build_model(frame_size=16, filters=4)
    flat = np.full((1, 3, 16, 16, 1), 0.7, np.float32)
    inner = model.predict(flat, verbose=0)[:, :, 2:-2, 2:-2]  # a mix of the pixels around each: a flat frame stays flat
    np.testing.assert_allclose(inner, 0.7, rtol=1e-5)
    dot = np.zeros((1, 1, 16, 16, 1), np.float32)
    dot[0, 0, 8, 8] = 1
    predicted = model.predict(dot, verbose=0)[0, 0, ..., 0]
    assert predicted.max() > 0.5 and predicted[8, 8] == predicted.max()  # untrained, it mostly copies the frame
    reach = nf_model.filter_size(16) // 2
    predicted[8 - reach : 9 + reach, 8 - reach : 9 + reach] = 0
    assert not predicted.any()  # ink only moves to the pixels within reach, never appears from nowhere


HOSTILE = "<img src=x onerror=alert(1)>|a$\\bogus$\nb"  # a run name and a data folder name from someone else


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny ConvLSTM run on real MNIST digits, its run directory and its data folder both named `HOSTILE`:
    its folder, data folder, command line, exit status and standard output."""
    root = tmp_path_factory.mktemp("convlstm")
    data = root / HOSTILE
    data.mkdir()
    (data / "t10k-images-idx3-ubyte.gz").symlink_to(DIGITS / "t10k-images-idx3-ubyte.gz")
    run_dir = root / "reports" / HOSTILE
    argv = [
        "convlstm",
        "--data",
        str(data),
        "--sequences",
        "10",
        "--frame-size",
        "16",
        "--filters",
        "2",
        "--epochs",
        "2",
        "--batch-size",
        "4",
        "--examples",
        "1",
        "--run",
        str(run_dir),
    ]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        status = main(argv)
    return run_dir, data, argv, status, out.getvalue()


@pytest.mark.slow
def test_a_tiny_run_writes_the_model_the_report_and_honest_baselines(tiny_run):
    run_dir, data, _, status, out = tiny_run
    assert status == 0 and out.strip() == str(run_dir / "index.html")

    for name in (
        "index.html",
        "report.md",
        "run.json",
        "curves.png",
        "per_frame.png",
        "example_0.png",
        "example_0.gif",
        "model/model.keras",
        "model/config.json",
        "model/history.csv",
        "model/per_frame.csv",
        "model/papers.csv",
        "model/metrics.json",
    ):
        assert (run_dir / name).is_file(), name
    assert not list((run_dir / "model").glob("*.h5"))  # the best epoch's weights went into model.keras
    assert folders.made_by_tool(run_dir, "run") and not list(run_dir.parent.glob(".*partial*"))
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["seconds_per_epoch"] > 0 and metrics["targets"] == 5
    assert metrics["rollout_mse_per_frame_64"] > 0 and 0 <= metrics["intensity_ratio_last_frame"]

    per_frame = pd.read_csv(run_dir / "model" / "per_frame.csv")
    assert list(per_frame.columns) == [
        "task",
        "frame",
        "mse",
        "bce",
        "ssim",
        "copy_last_mse",
        "blank_mse",
        "mean_frame_mse",
        "sharpness",
        "ink_kept",
    ]  # the columns, then whether the digits are still visible
    assert per_frame.groupby("task").size().to_dict() == {"one-step": 19, "rollout": 10}
    frames, _ = mm.moving_mnist(str(data), 10, 0)  # the run's held-out sequence, rebuilt here
    test = mm.model_frames(frames, 16)[-1]
    rollout = per_frame[per_frame["task"] == "rollout"].reset_index()
    for t in range(10):
        truth = test[10 + t]
        assert rollout.loc[t, "blank_mse"] == pytest.approx(float((truth**2).mean()), rel=1e-5)
        assert rollout.loc[t, "copy_last_mse"] == pytest.approx(float(((truth - test[9]) ** 2).mean()), rel=1e-5)
    one_step = per_frame[per_frame["task"] == "one-step"].reset_index()
    assert one_step.loc[4, "copy_last_mse"] == pytest.approx(float(((test[5] - test[4]) ** 2).mean()), rel=1e-5)

    papers = pd.read_csv(run_dir / "model" / "papers.csv")
    assert papers.loc[0, "mse_per_frame"] == pytest.approx(metrics["rollout_mse_per_frame_64"])
    assert papers["predictor"].str.contains("blank").any()
    summary = json.loads((run_dir / "run.json").read_text())
    assert (
        summary["kind"] == "convlstm"
        and summary["dataset"].endswith("10 sequences")
        and "MNIST idx" in summary["source"]
    )
    page = (run_dir / "index.html").read_text()
    for text in (
        "Rollout per horizon",
        "blank",
        "Papers&#x27; metrics",
        "3670.85",
        "46.26",
        "targets missed",  # one banner for all the missed targets
        "example_0.gif",
    ):
        assert text in page, text
    top_down = ["per_frame.png", "example_0.png", "<h2 id='targets'>", "Rollout per horizon", "curves.png", "Settings"]
    assert [page.index(text) for text in top_down] == sorted(page.index(text) for text in top_down)
    assert page.count("class='warning'") == 1  # one banner for all missed targets

    from PIL import Image

    with Image.open(run_dir / "example_0.gif") as gif:
        assert gif.n_frames == 20 and gif.width > 3 * gif.height


def test_hostile_run_and_data_names_produce_no_raw_markup(tiny_run):
    run_dir, data, *_ = tiny_run
    for page in (run_dir / "index.html", run_dir.parent / "index.html"):
        text = page.read_text()
        assert "<img src=x" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text, page
    markdown = (run_dir / "report.md").read_text()
    assert markdown.startswith(f"# ConvLSTM forecast: {pages.markdown_text(HOSTILE)}\n")
    assert str(data.parent) in markdown.replace("\\", "")  # the data source is shown, escaped
    assert "<" not in markdown and not re.search(r"(?<!\\)[$|]a", markdown)  # no tag, no math, no cell break
    for table in re.findall(r"(?:^\|.*\n)+", markdown, flags=re.MULTILINE):  # no cell split by a `|` in a name or path
        columns = {len(re.findall(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(columns) == 1, table


def test_figure_text_is_never_parsed_as_math(tmp_path):
    frames = pd.DataFrame(
        {
            "task": "$\\bogus$",
            "frame": [1, 2],
            "mse": 0.1,
            "copy_last_mse": 0.2,
            "blank_mse": 0.3,
            "mean_frame_mse": 0.4,
        }
    )
    figure = plot_per_frame(frames)
    figure.savefig(tmp_path / "per_frame.png")  # parsed as math, the undefined command would raise
    assert figure.axes[0].get_title() == "$\\bogus$" and (tmp_path / "per_frame.png").stat().st_size > 0


@pytest.mark.slow
def test_an_existing_run_is_replaced_only_whole_and_only_with_overwrite(tiny_run, monkeypatch):
    run_dir, _, argv, *_ = tiny_run
    before = {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()}
    assert main(argv) == 2  # no --overwrite: kept
    assert main(argv + ["--data", str(run_dir.parent / "missing.npy"), "--overwrite"]) == 2  # bad data: refused, kept

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cl, "train", interrupted)
    assert main(argv + ["--overwrite"]) == 130  # Ctrl-C while training: the old run stays whole
    assert {path: path.read_bytes() for path in run_dir.rglob("*") if path.is_file()} == before
    assert not list(run_dir.parent.glob(".*partial*"))
    monkeypatch.undo()

    marker = run_dir / folders.MARKER
    marker.unlink()  # a run of the previous version (no marker) is recognised by its exact files ...
    folders.check_replaceable(run_dir, overwrite=True)
    (run_dir / "notes.txt").write_text("mine")  # ... and one holding anything else is not
    with pytest.raises(folders.FolderError, match="does not look like a run directory"):
        folders.check_replaceable(run_dir, overwrite=True)
    (run_dir / "notes.txt").unlink()

    assert main(argv + ["--epochs", "1", "--overwrite"]) == 0  # the last of a repeated option counts
    assert json.loads((run_dir / "model" / "metrics.json").read_text())["epochs_run"] == 1 and marker.is_file()


def test_bad_data_presets_and_foreign_folders_are_refused_before_any_work(tmp_path):
    assert main(["convlstm", "--data", str(tmp_path / "missing.npy"), "--run", str(tmp_path / "run")]) == 2
    with pytest.raises(SystemExit):
        main(["convlstm", "--preset", "huge"])
    assert main(["convlstm", "--preset", "paper", "--frame-size", "24", "--run", str(tmp_path / "run")]) == 2
    folder = tmp_path / "notes"
    (folder / "model").mkdir(parents=True)
    for name in ("run.json", "notes.txt", "model/config.json"):  # looks like a run at a glance; is not one
        (folder / name).write_text("{}")
    assert main(["convlstm", "--sequences", "10", "--run", str(folder), "--overwrite"]) == 2
    with pytest.raises(folders.FolderError, match="does not look like a run directory"):
        cl.run_convlstm(nf_config.ConvLSTMConfig(), folder, overwrite=True)
    assert sorted(path.name for path in folder.rglob("*")) == ["config.json", "model", "notes.txt", "run.json"]
