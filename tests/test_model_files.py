"""A run directory is data: models load without unpickling, and planted code never runs."""

import json
import pickle
import shutil

import numpy as np
import pytest

from pipeline.classify.model_files import ModelFileError, load_model
from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT
from pipeline.predict.run import RunError, load_run


class Payload:
    """Unpickling this writes `marker`: what a planted pickle in a shared run would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


@pytest.fixture
def run(toy_run):
    return toy_run


def test_baselines_are_plain_arrays_and_reload_to_the_recorded_probabilities(run):
    import pandas as pd

    from pipeline.classify.sequences import SequenceConfig, SequenceSource, load_videos
    from pipeline.classify.train import batched_probabilities

    folder = run.run_dir / "model"
    with np.load(folder / "mean.npz", allow_pickle=False) as arrays:
        assert {"coef", "intercept", "classes", "scaler_mean", "scaler_scale"} <= set(arrays.files)
        assert all(arrays[key].dtype != object for key in arrays.files)
    store_path = json.loads((folder / "config.json").read_text())["store"]
    source = SequenceSource(store_path, load_videos(store_path), SequenceConfig(8), in_memory=False)
    splits = pd.read_csv(folder / "splits.csv")
    recorded = pd.read_csv(folder / "predictions.csv")
    for name in ("mean", "single-frame"):
        probabilities = batched_probabilities(
            load_model(folder / f"{name}.npz"), source, np.flatnonzero(splits["split"] == "test")
        )
        expected = recorded.loc[recorded["model"] == name, ["p_a", "p_b", "p_c", "p_d"]].to_numpy()
        assert expected.shape == (len(probabilities), 4) and len(expected)
        np.testing.assert_allclose(probabilities, expected, rtol=1e-6, atol=1e-9)
    assert not list(folder.glob("*.joblib"))


def _plant(path, kind, marker):
    """Write a malicious model file of `kind` at `path`; return a loader that trusts it (the control)."""
    import keras

    if kind == "pickle":
        path.write_bytes(pickle.dumps(Payload(marker)))
        return lambda: pickle.loads(path.read_bytes())
    if kind == "npz-object":
        with path.open("wb") as file:
            np.savez(file, coef=np.array([Payload(marker)], dtype=object))
        return lambda: np.load(path, allow_pickle=True)["coef"]
    if kind == "npy-pickle":
        with path.open("wb") as file:
            np.save(file, np.array([Payload(marker)], dtype=object))
        return lambda: np.load(path, allow_pickle=True)
    inputs = keras.Input((None, 6), name="frames")
    code = eval(f"lambda x: (open({str(marker)!r}, 'w').write('pwned'), x)[1]")  # the path a constant of the code
    outputs = keras.layers.Lambda(code)(inputs)
    keras.Model(inputs, outputs).save(path)
    return lambda: keras.models.load_model(path, safe_mode=False)


PLANTS = [  # (file name under model/, model name, payload kind)
    ("mean.joblib", "mean", "pickle"),
    ("mean.pkl", "mean", "pickle"),
    ("mean.pickle", "mean", "pickle"),
    ("mean.npz", "mean", "npz-object"),
    ("mean.npz", "mean", "npy-pickle"),
    ("single-frame.npz", "single-frame", "pickle"),
    ("mean.npy", "mean", "npy-pickle"),
    ("gru.keras", "gru", "keras-lambda"),
]


@pytest.mark.parametrize("filename, name, kind", PLANTS)
def test_a_planted_model_file_never_runs(run, tmp_path, filename, name, kind):
    shared = tmp_path / "shared-run"
    shutil.copytree(run.run_dir, shared)
    folder = shared / "model"
    for old in folder.glob(f"{name}.*"):
        old.unlink()
    marker = tmp_path / "pwned"
    planted = folder / filename
    trusting_loader = _plant(planted, kind, marker)
    marker.unlink(missing_ok=True)  # building the Keras model ran its Lambda once
    trusting_loader()
    assert marker.exists(), "control: the payload runs when the file is trusted"
    marker.unlink()
    # the run's own metrics.json names the model, so it is also the default of `predict`
    (folder / "metrics.json").write_text(json.dumps({name: {"kind": "order-blind", "val_accuracy": 1.0}}))

    with pytest.raises((RunError, ModelFileError)):
        load_run(shared)
    with pytest.raises((RunError, ModelFileError)):
        load_run(shared, model=name)
    with pytest.raises((ModelFileError, FileNotFoundError)):
        load_model(planted)
    assert main(["predict", str(shared), str(tmp_path / "video.mp4"), "--model", name]) == EXIT_BAD_INPUT
    store_path = json.loads((folder / "config.json").read_text())["store"]
    assert (
        main(
            [
                "train",
                "--store",
                store_path,
                "--model",
                "gru",
                "--init",
                str(planted),
                "--run",
                str(tmp_path / "tuned"),
                "--seq-len",
                "8",
                "--epochs",
                "1",
                "--no-progress",
            ]
        )
        == EXIT_BAD_INPUT
    )
    assert not marker.exists()
    assert not (tmp_path / "tuned").exists()


def test_a_baseline_saved_by_an_earlier_version_is_refused_by_name(run, tmp_path):
    shared = tmp_path / "old-run"
    shutil.copytree(run.run_dir, shared)
    (shared / "model" / "mean.npz").rename(shared / "model" / "mean.joblib")
    with pytest.raises(RunError, match=r"mean\.joblib is a pickle .* not loaded: retrain"):
        load_run(shared, model="mean")
    with pytest.raises(RunError, match="not a model name"):
        load_run(shared, model="../../model/mean")


def test_damaged_or_foreign_arrays_are_refused(run, tmp_path):
    path = tmp_path / "mean.npz"
    np.savez(path, coef=np.zeros((2, 3)))
    with pytest.raises(ModelFileError, match="missing"):
        load_model(path)
    with np.load(run.run_dir / "model" / "mean.npz") as arrays:
        fields = {key: arrays[key] for key in arrays.files}
    np.savez(path, **{**fields, "coef": fields["coef"][:, :2]})
    with pytest.raises(ModelFileError, match="inconsistent array shapes"):
        load_model(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(ModelFileError, match="plain arrays only"):
        load_model(path)
