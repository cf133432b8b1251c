"""Moving MNIST data and the ConvLSTM next-frame run, on tiny sizes."""

import gzip
import json
import struct

import numpy as np
import pandas as pd
import pytest
from conftest import DIGITS

from pipeline import moving_mnist as mm
from pipeline.cli import main


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


def test_generation_from_the_shared_mnist_idx_files():
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


def test_splits_and_config_validation():
    assert mm.split_sizes(100) == (80, 10, 10)
    assert mm.split_sizes(3) == (1, 1, 1)
    with pytest.raises(ValueError, match="too few"):
        mm.ConvLSTMConfig(sequences=2)
    with pytest.raises(ValueError, match="frame size"):
        mm.ConvLSTMConfig(frame_size=24)


def test_scores_against_copying_the_last_frame():
    sequences = np.random.default_rng(0).random((3, 20, 4, 4, 1)).astype(np.float32)
    perfect = mm._frame_scores("one-step", 1, sequences[:, 1:], sequences[:, 1:], sequences[:, :-1])
    assert (perfect["mse"] == 0).all() and (perfect["mse_copy_last"] > 0).all()
    assert list(perfect["frame"]) == list(range(1, 20))
    summary = mm.summarise(perfect)
    assert summary.loc[0, "mse_ratio"] == 0


def test_the_model_is_causal_at_every_frame():
    import keras

    keras.utils.set_random_seed(0)  # some initial weights leave ReLU units dead, so an output ignores its frame
    model = mm.build_model(frame_size=8, filters=4)
    frames = np.random.default_rng(0).random((1, 5, 8, 8, 1)).astype(np.float32)
    model.fit(frames, frames, epochs=1, verbose=0)  # TensorFlow rewrites the graph once trained: test that graph
    before = model.predict(frames, verbose=0)
    assert before.shape == frames.shape
    for t in range(5):
        changed = frames.copy()
        changed[:, t] = 0
        after = model.predict(changed, verbose=0)
        np.testing.assert_allclose(before[:, :t], after[:, :t], atol=1e-6)  # output t-1 (frame t) never sees frame t
        assert not np.allclose(before[:, t], after[:, t])  # ... and output t does, the last one included
    assert mm.rollout(model, frames[:, :3], 2).shape == (1, 2, 8, 8, 1)


def test_a_tiny_run_from_the_command_line_writes_the_model_and_the_report(tmp_path, capsys):
    run_dir = tmp_path / "reports" / "convlstm-tiny"
    argv = ["convlstm", "--sequences", "10", "--frame-size", "16", "--filters", "2", "--epochs", "2", "--batch-size", "4",
            "--examples", "1", "--run", str(run_dir)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(run_dir / "index.html")

    for name in ("index.html", "report.md", "run.json", "curves.png", "per_frame.png", "example_0.png", "example_0.gif",
                 "model/model.keras", "model/config.json", "model/history.csv", "model/per_frame.csv", "model/metrics.json"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "model" / "metrics.json").read_text())
    assert metrics["one_step_mse_copy_last"] > 0 and metrics["rollout_mse"] > 0 and metrics["epochs_run"] == 2
    per_frame = pd.read_csv(run_dir / "model" / "per_frame.csv")
    assert per_frame.groupby("task").size().to_dict() == {"one-step": 19, "rollout": 10}
    summary = json.loads((run_dir / "run.json").read_text())
    assert summary["kind"] == "convlstm" and summary["dataset"] == "Moving MNIST (sklearn), 10 sequences" and "scikit-learn" in summary["source"]
    assert "convlstm-tiny" in (tmp_path / "reports" / "index.html").read_text()
    page = (run_dir / "index.html").read_text()
    assert "copy-last-frame baseline" in page and "example_0.gif" in page

    from PIL import Image

    with Image.open(run_dir / "example_0.gif") as gif:
        assert gif.n_frames == 20 and gif.width > 3 * gif.height
    assert main(argv) == 2  # an existing run is kept without --overwrite


def test_bad_data_and_foreign_folders_are_refused_before_any_work(tmp_path):
    assert main(["convlstm", "--data", str(tmp_path / "missing.npy"), "--run", str(tmp_path / "run")]) == 2
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a run")
    with pytest.raises(ValueError, match="not a run directory"):
        mm.run_convlstm(mm.ConvLSTMConfig(), folder, overwrite=True)
    assert (folder / "notes.txt").is_file()
