"""Stage two: training runs on small stores, their run directories, and refused inputs."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.train import train
from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT, EXIT_OK
from pipeline.runs.layout import ALL_MODELS

from helpers import write_store

TINY = SequenceModelConfig(units=16, dropout=0.1)


def fast(**overrides) -> TrainConfig:
    """A training config that finishes in seconds on the toy stores."""
    settings = {"network": TINY, "epochs": 20, "patience": 10, "batch_size": 8, "learning_rate": 1e-2, "seq_len": 8}
    return TrainConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def direction_store(tmp_path_factory):
    """60 videos of two classes that differ only in the direction of a ramp (see write_store)."""
    return write_store(
        tmp_path_factory.mktemp("store") / "features" / "toy" / "toy.h5",
        ["up", "down"] * 30,
        lengths=[8, 10, 12] * 20,
        groups=[f"g{i // 2}" for i in range(60)],
        fallback="random toy features",
    )


@pytest.fixture(scope="module")
def all_models_run(direction_store, tmp_path_factory):
    return train(direction_store, tmp_path_factory.mktemp("runs") / "toy-all", fast(models=ALL_MODELS), progress=False)


def test_sequence_models_learn_the_order_the_baselines_cannot_see(all_models_run):
    accuracy = {name: values["accuracy"] for name, values in all_models_run.metrics.items()}
    assert accuracy["gru"] >= 0.9 and accuracy["lstm"] >= 0.9, accuracy
    assert accuracy["mean"] <= 0.75 and accuracy["single-frame"] <= 0.75, accuracy


@pytest.mark.slow
def test_on_small_demo_data_sequence_models_learn_time_order_and_baselines_stay_near_chance(tmp_path):
    """The demo classes come in time-reversed pairs: an order-blind model can at best tell the pairs
    apart (about 0.5 accuracy), so GRU and LSTM at >= 0.95 show that frame order is learned."""
    from pipeline.dataset.demo import write_demo_dataset
    from pipeline.dataset.manifest import read_manifest
    from pipeline.extract.backbones import Weights, load_backbone, resolve_precision
    from pipeline.extract.config import FeatureConfig
    from pipeline.extract.run import extract_features

    manifest = write_demo_dataset(tmp_path / "clips", tmp_path / "demo.csv", per_class=16)
    config = FeatureConfig(
        backbone="vgg16",
        weights="none",
        image_size=64,
        sampling="uniform:8",
        precision=resolve_precision("auto", "vgg16"),
    )
    backbone = load_backbone(config.backbone, Weights("none"), config.image_size, precision=config.precision)
    store_path = tmp_path / "features" / "demo" / config.store_name()
    extract_features(read_manifest(manifest), store_path, backbone, config, progress=False)
    run = train(store_path, tmp_path / "run", TrainConfig(models=ALL_MODELS, epochs=25), progress=False)
    accuracy = {name: values["accuracy"] for name, values in run.metrics.items()}
    assert run.metrics["gru"]["test_videos"] == 12
    assert accuracy["gru"] >= 0.95 and accuracy["lstm"] >= 0.95, accuracy
    assert max(accuracy["mean"], accuracy["single-frame"]) <= 0.75, (
        accuracy
    )  # 12 test videos: chance between pair members is 0.5


def test_run_directory_holds_models_labels_config_history_predictions_metrics(all_models_run, direction_store):
    folder = all_models_run.run_dir / "model"
    assert {path.name for path in folder.iterdir()} == {
        "gru.keras",
        "lstm.keras",
        "mean.npz",
        "single-frame.npz",
        "labels.json",
        "config.json",
        "splits.csv",
        "history.csv",
        "predictions.csv",
        "metrics.json",
        "tensorboard",  # <model>/train|validation: TensorBoard logs of the sequence models
    }
    assert sorted(path.name for path in (folder / "tensorboard").iterdir()) == ["gru", "lstm"]
    assert json.loads((folder / "labels.json").read_text()) == ["down", "up"]
    config = json.loads((folder / "config.json").read_text())
    assert config["feature_config"]["backbone"] == "toy" and config["fallback"] == "random toy features"
    assert config["sequence"] == {"seq_len": 8, "policy": "pad"} and config["train"]["models"] == list(ALL_MODELS)
    history = pd.read_csv(folder / "history.csv")
    assert set(history["model"]) == {"gru", "lstm"}
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(history.columns)
    predictions = pd.read_csv(folder / "predictions.csv")
    splits = pd.read_csv(folder / "splits.csv")
    test_ids = set(splits.loc[splits["split"] == "test", "video_id"])
    for name in ALL_MODELS:
        rows = predictions[predictions["model"] == name]
        assert set(rows["video_id"]) == test_ids
        np.testing.assert_allclose(rows[["p_down", "p_up"]].sum(axis=1), 1.0, rtol=1e-5)
        assert (rows["predicted"] == np.where(rows["p_up"] > rows["p_down"], "up", "down")).all()
    metrics = json.loads((folder / "metrics.json").read_text())
    for name in ALL_MODELS:
        rows = predictions[predictions["model"] == name]
        assert metrics[name]["accuracy"] == pytest.approx((rows["true"] == rows["predicted"]).mean())
        assert set(metrics[name]["per_class"]) == {"down", "up"} and metrics[name]["test_videos"] == len(test_ids)
    assert (
        all_models_run.run_dir / "index.html"
    ).is_file() and all_models_run.report == all_models_run.run_dir / "index.html"


def test_saved_models_reload_and_predict_what_the_run_recorded(all_models_run, direction_store):
    from pipeline.classify.model_files import load_model
    from pipeline.classify.sequences import SequenceConfig, SequenceSource, load_videos
    from pipeline.classify.train import batched_probabilities

    folder = all_models_run.run_dir / "model"
    videos = load_videos(direction_store)
    splits = pd.read_csv(folder / "splits.csv")
    rows = np.flatnonzero(splits["split"].to_numpy() == "test")
    source = SequenceSource(direction_store, videos, SequenceConfig(8), in_memory=False)
    predictions = pd.read_csv(folder / "predictions.csv")
    for name, model in (
        ("gru", load_model(folder / "gru.keras")),
        ("mean", load_model(folder / "mean.npz")),
        ("single-frame", load_model(folder / "single-frame.npz")),
    ):
        recorded = predictions.loc[predictions["model"] == name, ["p_down", "p_up"]].to_numpy()
        np.testing.assert_allclose(batched_probabilities(model, source, rows), recorded, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(
    "kind, network",
    [
        ("gru", SequenceModelConfig(units=4)),
        ("lstm", SequenceModelConfig(units=4, layers=2, bidirectional=True)),
    ],
)
def test_masked_padding_does_not_change_a_prediction(kind, network):
    from pipeline.classify.models import build_sequence_model, input_dim

    rng = np.random.default_rng(0)
    model = build_sequence_model(kind, 3, 2, np.zeros(3, np.float32), np.ones(3, np.float32), network)
    frames = rng.normal(size=(1, 5, 3)).astype(np.float32)
    padded = np.concatenate([frames, np.zeros((1, 3, 3), np.float32)], axis=1)
    mask = np.array([[True] * 5 + [False] * 3])
    short = np.asarray(model({"frames": frames, "mask": np.ones((1, 5), bool)}))
    np.testing.assert_allclose(np.asarray(model({"frames": padded, "mask": mask})), short, rtol=1e-5, atol=1e-6)
    unmasked = build_sequence_model(
        kind,
        3,
        2,
        np.zeros(3, np.float32),
        np.ones(3, np.float32),
        SequenceModelConfig(**{**network.to_dict(), "masking": False}),
    )
    unmasked.set_weights(model.get_weights())
    assert not np.allclose(np.asarray(unmasked({"frames": padded, "mask": mask})), short)
    assert input_dim(model) == 3 and model.output_shape == (None, 2)


def test_resampled_sequences_and_a_stacked_bidirectional_network_train(direction_store, tmp_path):
    network = SequenceModelConfig(units=8, layers=2, bidirectional=True, masking=False)
    run = train(
        direction_store,
        tmp_path / "run",
        fast(models=("lstm",), policy="resample", network=network, epochs=2),
        progress=False,
    )
    config = json.loads((run.run_dir / "model" / "config.json").read_text())
    assert config["sequence"]["policy"] == "resample" and config["train"]["network"]["bidirectional"] is True
    assert run.metrics["lstm"]["epochs"] == 2


@pytest.mark.slow
def test_streamed_and_in_memory_training_give_the_same_run(direction_store, tmp_path):
    runs = {
        mode: train(direction_store, tmp_path / mode, fast(models=("gru",), epochs=3, data=mode), progress=False)
        for mode in ("memory", "stream")
    }
    histories = {
        mode: pd.read_csv(run.run_dir / "model" / "history.csv").drop(columns="seconds") for mode, run in runs.items()
    }
    pd.testing.assert_frame_equal(histories["memory"], histories["stream"], rtol=1e-5)
    predictions = {mode: pd.read_csv(run.run_dir / "model" / "predictions.csv") for mode, run in runs.items()}
    pd.testing.assert_frame_equal(predictions["memory"], predictions["stream"], rtol=1e-5)
    assert json.loads((runs["stream"].run_dir / "model" / "config.json").read_text())["data"] == "stream"


def test_existing_run_directory_is_refused_unless_overwrite(direction_store, tmp_path):
    run = tmp_path / "run"
    train(direction_store, run, fast(models=("mean",)), progress=False)
    # a file the run wrote (one of the user's would be refused: test_hostile_runs)
    (run / "report.md").write_text("old")
    with pytest.raises(ValueError, match="exists; pass --overwrite"):
        train(direction_store, run, fast(models=("mean",)), progress=False)
    train(direction_store, run, fast(models=("mean",)), overwrite=True, progress=False)
    assert (run / "report.md").read_text() != "old" and (run / "model" / "mean.npz").is_file()
    other = tmp_path / "not-a-run"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="does not look like a run directory"):
        train(direction_store, other, fast(models=("mean",)), overwrite=True, progress=False)
    assert (other / "thesis.tex").is_file()


def test_fine_tuning_checks_feature_dimension_and_classes(all_models_run, direction_store, tmp_path):
    model = all_models_run.run_dir / "model" / "gru.keras"
    tuned = train(direction_store, tmp_path / "tuned", fast(models=("gru",), init=str(model), epochs=2), progress=False)
    assert tuned.metrics["gru"]["accuracy"] >= 0.9  # starts from the trained weights
    wider = write_store(tmp_path / "wide.h5", ["up", "down"] * 4, dim=9)
    with pytest.raises(ValueError, match="expects 6-dimensional features but the store has 9"):
        train(wider, tmp_path / "wide-run", fast(models=("gru",), init=str(model)), progress=False)
    other_classes = write_store(tmp_path / "other.h5", ["left", "right"] * 4)
    with pytest.raises(ValueError, match="fine-tuning needs the same classes"):
        train(other_classes, tmp_path / "other-run", fast(models=("gru",), init=str(model)), progress=False)
    with pytest.raises(ValueError, match="fine-tunes one sequence model"):
        fast(models=("gru", "mean"), init=str(model))
    assert not (tmp_path / "wide-run").exists() and not (tmp_path / "other-run").exists()


def test_class_weights_and_a_validation_split_from_the_manifest(tmp_path):
    labels = ["up"] * 24 + ["down"] * 6  # imbalanced
    splits = (["train"] * 16 + ["val"] * 4 + ["test"] * 4) + (["train"] * 4 + ["val"] * 1 + ["test"] * 1)
    path = write_store(tmp_path / "imbalanced.h5", labels, splits=splits)
    run = train(path, tmp_path / "run", fast(models=("gru", "mean"), class_weights=True, epochs=3), progress=False)
    saved = pd.read_csv(run.run_dir / "model" / "splits.csv")
    assert saved["split"].tolist() == splits
    assert run.metrics["gru"]["test_videos"] == 5


def test_cli_trains_prints_the_report_and_refuses_bad_input(direction_store, tmp_path, capsys, caplog):
    run = tmp_path / "cli-run"
    args = [
        "train",
        "--store",
        str(direction_store),
        "--model",
        "mean,single-frame",
        "--run",
        str(run),
        "--seq-len",
        "8",
        "--no-progress",
    ]
    assert main(args) == EXIT_OK
    assert capsys.readouterr().out.strip() == str(run / "index.html")
    assert main(args) == EXIT_BAD_INPUT and "--overwrite" in caplog.text
    assert main([*args[:-3], "--seq-len", "99", "--overwrite"]) == EXIT_BAD_INPUT
    assert "larger than the longest video in the store (12 frames)" in caplog.text
    assert (
        main(["train", "--store", str(direction_store), "--model", "transformer", "--run", str(tmp_path / "x")])
        == EXIT_BAD_INPUT
    )
    assert "unknown model(s) transformer" in caplog.text
    one_class = write_store(tmp_path / "one.h5", ["up"] * 4)
    assert main(["train", "--store", str(one_class), "--run", str(tmp_path / "y")]) == EXIT_BAD_INPUT
    assert "only one class" in caplog.text and not (tmp_path / "y").exists()
    assert main(["train", "--store", str(tmp_path / "missing.h5")]) == EXIT_BAD_INPUT
    assert "no feature store" in caplog.text


def test_fine_tuning_records_the_loaded_architecture_not_ignored_options(
    all_models_run, direction_store, tmp_path, caplog
):
    model = all_models_run.run_dir / "model" / "gru.keras"
    asked = SequenceModelConfig(units=8, layers=3, bidirectional=True, dropout=0.1)
    tuned = train(
        direction_store,
        tmp_path / "tuned",
        fast(models=("gru",), init=str(model), epochs=1, network=asked),
        progress=False,
    )
    recorded = json.loads((tuned.run_dir / "model" / "config.json").read_text())["train"]["network"]
    assert (recorded["units"], recorded["layers"], recorded["bidirectional"]) == (
        TINY.units,
        TINY.layers,
        TINY.bidirectional,
    )
    assert (
        "the loaded model's architecture is used, not the network options units=8, layers=3, bidirectional=True"
        in caplog.text
    )
    with pytest.raises(ValueError, match="is a gru model but this run asks for --model lstm"):
        train(direction_store, tmp_path / "lstm", fast(models=("lstm",), init=str(model)), progress=False)
