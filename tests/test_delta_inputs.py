"""Delta inputs (`--inputs features,deltas`) and grid cells projected alike (`--cell-units`): what the sequence model
sees, masking, the run's record and predict (predict of a cell model: test_pooling)."""

import json

import numpy as np
import pandas as pd
import pytest

from pipeline.classify.config import TrainConfig
from pipeline.classify.models import (
    SequenceModelConfig,
    build_sequence_model,
    frame_deltas,
    grid_cells,
    input_dim,
    loaded_architecture,
    model_inputs,
    parse_inputs,
)
from pipeline.classify.sequences import SequenceConfig, SequenceSource, delta_scale, load_videos
from pipeline.classify.train import train
from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT

from helpers import write_store

DELTAS = SequenceModelConfig(units=16, dropout=0.1, inputs=("features", "deltas"))


def test_deltas_are_differences_of_valid_neighbours_and_zero_elsewhere():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    mask = np.array([[True] * 6, [True] * 4 + [False] * 2])
    deltas = np.asarray(frame_deltas(x, mask))
    assert deltas.shape == (2, 6, 3)
    np.testing.assert_array_equal(deltas[:, 0], 0)  # the first step has no predecessor
    np.testing.assert_allclose(deltas[0, 1:], np.diff(x[0], axis=0), rtol=1e-6)
    np.testing.assert_allclose(deltas[1, 1:4], np.diff(x[1, :4], axis=0), rtol=1e-6)
    np.testing.assert_array_equal(deltas[1, 4:], 0)  # padded steps: nothing to differ from


def test_delta_scale_reads_only_valid_step_pairs(tmp_path):
    path = write_store(tmp_path / "s.h5", ["up", "down"] * 3, lengths=[3, 5, 8, 4, 6, 8])
    videos = load_videos(path)
    source = SequenceSource(path, videos, SequenceConfig(8), in_memory=True)
    x, mask = source.read(np.arange(len(videos)))
    pairs = np.concatenate([np.diff(x[i, :n], axis=0) for i, n in enumerate(videos["length"])])
    np.testing.assert_allclose(
        delta_scale(source, np.arange(len(videos)), batch_size=4),
        np.sqrt((pairs.astype(np.float64) ** 2).mean(0)),
        rtol=1e-5,
    )


@pytest.mark.parametrize(
    "kind, network",
    [
        ("gru", SequenceModelConfig(units=4, inputs=("features", "deltas"))),
        ("lstm", SequenceModelConfig(units=4, bidirectional=True, inputs=("deltas",))),
        (
            "gru",
            SequenceModelConfig(units=4, inputs=("features", "deltas"), cell_units=2),
        ),  # 3 cells of one channel each
    ],
)
def test_padded_steps_change_no_prediction_of_a_delta_model(kind, network):
    rng = np.random.default_rng(1)
    model = build_sequence_model(
        kind, 3, 2, np.zeros(3, np.float32), np.ones(3, np.float32), network, np.full(3, 0.5, np.float32), cells=3
    )
    frames = rng.normal(size=(1, 5, 3)).astype(np.float32)
    garbage = rng.normal(size=(1, 3, 3)).astype(
        np.float32
    )  # padded steps with values: the mask must hide them and their deltas
    short = np.asarray(model({"frames": frames, "mask": np.ones((1, 5), bool)}))
    padded = np.asarray(
        model({"frames": np.concatenate([frames, garbage], 1), "mask": np.array([[True] * 5 + [False] * 3])})
    )
    np.testing.assert_allclose(padded, short, rtol=1e-5, atol=1e-6)
    assert input_dim(model) == 3 and model_inputs(model) == network.inputs
    reversed_order = np.asarray(model({"frames": frames[:, ::-1], "mask": np.ones((1, 5), bool)}))
    assert not np.allclose(reversed_order, short)


def test_one_projection_serves_every_grid_cell():
    """4 cells of 3 channels, features and deltas: one Dense (6 -> 5) for all cells, so equal cells project equally."""
    import keras

    network = SequenceModelConfig(units=4, inputs=("features", "deltas"), cell_units=5)
    model = build_sequence_model(
        "gru", 12, 2, np.zeros(12, np.float32), np.ones(12, np.float32), network, np.ones(12, np.float32), cells=4
    )
    projection = model.get_layer("cells")
    assert tuple(projection.kernel.shape) == (6, 5)  # parameters independent of the number of cells
    cell = np.random.default_rng(2).normal(size=(1, 3, 1, 3)).astype(np.float32)
    frames = np.concatenate([cell, cell, -cell, cell], axis=2).reshape(1, 3, 12)
    projected = np.asarray(
        keras.Model(model.inputs, projection.output)({"frames": frames, "mask": np.ones((1, 3), bool)})
    )
    assert projected.shape == (1, 3, 4, 5)
    np.testing.assert_allclose(projected[:, :, 0], projected[:, :, 1], rtol=1e-6)
    np.testing.assert_allclose(projected[:, :, 0], projected[:, :, 3], rtol=1e-6)
    assert not np.allclose(projected[:, :, 0], projected[:, :, 2])
    assert loaded_architecture(model, SequenceModelConfig()).cell_units == 5  # what fine-tuning keeps
    assert [grid_cells(pooling) for pooling in ("avg", "grid2", "grid3")] == [1, 4, 9]
    with pytest.raises(ValueError, match="12 features cannot be split into 5 grid cells"):
        build_sequence_model("gru", 12, 2, np.zeros(12, np.float32), np.ones(12, np.float32), network, cells=5)
    with pytest.raises(ValueError, match="cell units"):
        SequenceModelConfig(cell_units=-1)
    wide = SequenceModelConfig(units=4, inputs=("features", "deltas"), cell_units=7)  # a cell has 3 channels, twice
    with pytest.raises(ValueError, match="--cell-units 7 is more than a grid cell's 6 inputs"):
        build_sequence_model("gru", 12, 2, np.zeros(12, np.float32), np.ones(12, np.float32), wide, cells=4)


def test_inputs_are_validated():
    assert parse_inputs("features, deltas") == ("features", "deltas") and parse_inputs("deltas") == ("deltas",)
    for bad in ("", "deltas,deltas", "flow"):
        with pytest.raises(ValueError, match="model inputs"):
            parse_inputs(bad)


@pytest.fixture(scope="module")
def delta_run(tmp_path_factory):
    """A GRU reading features and deltas, beside the mean baseline, on stores whose classes differ only in order."""
    root = tmp_path_factory.mktemp("deltas")
    store_path = write_store(root / "features" / "toy" / "toy.h5", ["up", "down"] * 30, lengths=[8, 10, 12] * 20)
    config = TrainConfig(
        models=("gru", "mean"),
        network=DELTAS,
        epochs=20,
        patience=10,
        batch_size=8,
        learning_rate=1e-2,
        seq_len=8,
        lr_patience=3,
    )
    return store_path, train(store_path, root / "run", config, progress=False)


def test_a_delta_run_records_its_inputs_and_its_saved_model_reads_them(delta_run):
    import keras

    from pipeline.classify.train import batched_probabilities

    store_path, run = delta_run
    folder = run.run_dir / "model"
    config = json.loads((folder / "config.json").read_text())
    assert config["train"]["network"]["inputs"] == ["features", "deltas"] and config["train"]["lr_patience"] == 3
    model = keras.models.load_model(folder / "gru.keras")
    assert model_inputs(model) == ("features", "deltas")
    assert run.metrics["gru"]["accuracy"] >= 0.9 and run.metrics["mean"]["accuracy"] <= 0.75, run.metrics
    splits = pd.read_csv(folder / "splits.csv")
    rows = np.flatnonzero(splits["split"].to_numpy() == "test")
    source = SequenceSource(store_path, load_videos(store_path), SequenceConfig(8), in_memory=False)
    recorded = pd.read_csv(folder / "predictions.csv").query("model == 'gru'")[["p_down", "p_up"]].to_numpy()
    np.testing.assert_allclose(batched_probabilities(model, source, rows), recorded, rtol=1e-4, atol=1e-6)


def test_fine_tuning_with_other_inputs_is_refused(delta_run, tmp_path):
    store_path, run = delta_run
    config = TrainConfig(models=("gru",), epochs=1, seq_len=8, init=str(run.run_dir / "model" / "gru.keras"))
    with pytest.raises(ValueError, match="--inputs features,deltas"):
        train(store_path, tmp_path / "tuned", config, progress=False)
    assert not (tmp_path / "tuned").exists()
    assert (
        main(
            [
                "train",
                "--store",
                str(store_path),
                "--model",
                "gru",
                "--inputs",
                "features,flow",
                "--run",
                str(tmp_path / "x"),
            ]
        )
        == EXIT_BAD_INPUT
    )


@pytest.mark.slow
def test_predict_builds_the_inputs_the_run_was_trained_with(tmp_path):
    """predict on the test clips of a delta run gives the probabilities training recorded for them."""
    from pipeline.dataset.demo import write_demo_dataset
    from pipeline.dataset.manifest import read_manifest
    from pipeline.extract.backbones import Weights, load_backbone
    from pipeline.extract.config import FeatureConfig
    from pipeline.extract.run import extract_features
    from pipeline.predict.run import load_run
    from pipeline.predict.videos import predict_videos

    manifest = write_demo_dataset(tmp_path / "clips", tmp_path / "demo.csv", per_class=7)
    feature_config = FeatureConfig(
        backbone="vgg16", weights="none", image_size=32, sampling="uniform:8", precision="float32", dtype="float32"
    )
    backbone = load_backbone("vgg16", Weights("none"), 32, precision="float32")
    extract_features(read_manifest(manifest), tmp_path / "store.h5", backbone, feature_config, progress=False)
    train(
        tmp_path / "store.h5",
        tmp_path / "run",
        TrainConfig(models=("gru",), network=DELTAS, epochs=2, patience=2),
        progress=False,
    )
    run = load_run(tmp_path / "run")
    assert model_inputs(run.model) == tuple(
        json.loads((tmp_path / "run" / "model" / "config.json").read_text())["train"]["network"]["inputs"]
    )
    recorded = pd.read_csv(tmp_path / "run" / "model" / "predictions.csv")
    predictions = predict_videos(run, list(recorded["path"]), top_k=len(run.labels), progress=False).videos
    for row, (_, expected) in zip(predictions.to_dict("records"), recorded.iterrows()):
        for k in range(1, len(run.labels) + 1):
            assert row[f"probability_{k}"] == pytest.approx(expected[f"p_{row[f'label_{k}']}"], abs=1e-4)


@pytest.mark.slow
def test_train_cli_records_the_cell_units(delta_run, tmp_path):
    store_path, _ = delta_run
    args = [
        "train",
        "--store",
        str(store_path),
        "--model",
        "gru",
        "--seq-len",
        "8",
        "--epochs",
        "1",
        "--no-progress",
        "--cell-units",
    ]
    assert main([*args, "2", "--run", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run/model/config.json").read_text())["train"]["network"]["cell_units"] == 2
    with pytest.raises(SystemExit) as refused:  # out of the option's range: argparse refuses it before any work
        main([*args, "-1", "--run", str(tmp_path / "bad")])
    assert refused.value.code == EXIT_BAD_INPUT and not (tmp_path / "bad").exists()
