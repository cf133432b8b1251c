"""Grid-pooled features (`features --pooling grid2|grid3`): shapes, the store's config identity, and predict."""

import h5py
import numpy as np
import pytest

from pipeline import store
from pipeline.cli import main
from pipeline.cli.common import EXIT_OK
from pipeline.core.errors import BackboneError
from pipeline.dataset.manifest import read_manifest
from pipeline.extract.backbones import Weights, load_backbone
from pipeline.extract.config import FeatureConfig
from pipeline.extract.run import extract_features

from helpers import gradient_clip, manifest_csv


@pytest.fixture(scope="module")
def frames():
    return gradient_clip(4, 64, 64, seed=3)


@pytest.fixture(scope="module")
def grid2():
    return load_backbone("vgg16", Weights("none"), 64, batch_size=4, pooling="grid2")


def test_grid_cells_are_local_averages_of_the_map_that_avg_pools_globally(frames, grid2):
    """VGG16 at 64 px ends in a 2x2 map: grid2 keeps its four cells, their mean is the global average."""
    pooled = {
        "avg": load_backbone("vgg16", Weights("none"), 64, batch_size=4).embed(frames),
        "grid2": grid2.embed(frames),
        "grid3": load_backbone("vgg16", Weights("none"), 96, batch_size=4, pooling="grid3").embed(
            gradient_clip(4, 96, 96)
        ),
    }
    assert {name: f.shape for name, f in pooled.items()} == {
        "avg": (4, 512),
        "grid2": (4, 2048),
        "grid3": (4, 4608),
    }  # grid3: 96 px, a 3x3 map
    cells = pooled["grid2"].reshape(4, 2, 2, 512)
    np.testing.assert_allclose(cells.mean(axis=(1, 2)), pooled["avg"], rtol=1e-4, atol=1e-6)
    assert (
        np.abs(cells - cells.mean(axis=(1, 2), keepdims=True)).mean() > 1e-3 * np.abs(cells).mean()
    )  # cells differ: where things are
    with pytest.raises(BackboneError, match="pooling 'max' is not one of avg, grid2, grid3"):
        load_backbone("vgg16", Weights("none"), 64, pooling="max")


def test_pooling_is_part_of_the_store_identity_and_avg_keeps_the_old_names():
    avg = FeatureConfig(backbone="vgg16", weights="none", image_size=64)
    assert "pooling" not in avg.to_dict()  # stores made before the option keep their digest and file name
    grid = FeatureConfig(backbone="vgg16", weights="none", image_size=64, pooling="grid2")
    assert grid.to_dict()["pooling"] == "grid2" and grid.store_name() != avg.store_name()
    assert FeatureConfig(**grid.to_dict()) == grid and FeatureConfig(**avg.to_dict()) == avg
    with pytest.raises(ValueError, match="pooling 'grid4'"):
        FeatureConfig(pooling="grid4")


def test_cli_records_the_pooling_and_refuses_a_store_of_another(tmp_path, make_video):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video(f"v{i}.mp4", seed=i)), "ab"[i]) for i in range(2)])
    argv = [
        "features",
        "--manifest",
        str(csv),
        "--backbone",
        "vgg16",
        "--weights",
        "none",
        "--image-size",
        "64",
        "--sampling",
        "uniform:4",
        "--no-progress",
        "--store",
        str(tmp_path / "s.h5"),
    ]
    assert main([*argv, "--pooling", "grid2"]) == EXIT_OK
    assert store.read_attrs(tmp_path / "s.h5")["feature_config"]["pooling"] == "grid2"
    with h5py.File(tmp_path / "s.h5") as handle:
        assert handle["features"].shape == (8, 2048)
    config = FeatureConfig(
        backbone="vgg16", weights="none", image_size=64, sampling="uniform:4"
    )  # avg into the grid2 store
    with pytest.raises(
        store.StoreError, match=r"holds features of another config \(pooling: grid2 in the store, the default asked;"
    ):
        extract_features(
            read_manifest(csv), tmp_path / "s.h5", load_backbone("vgg16", Weights("none"), 64), config, progress=False
        )


def test_predict_pools_as_the_run_recorded(tmp_path, make_video, grid2):
    """... and a model that projects each grid cell alike (`--cell-units`) is recorded and predicts as it was
    evaluated."""
    import json

    import pandas as pd

    from pipeline.classify.config import TrainConfig
    from pipeline.classify.models import SequenceModelConfig
    from pipeline.classify.train import train
    from pipeline.predict.run import load_run
    from pipeline.predict.videos import predict_videos

    videos = [str(make_video(f"v{i}.mp4", frames=6, seed=i)) for i in range(6)]
    manifest = read_manifest(manifest_csv(tmp_path / "m.csv", [(video, "ab"[i % 2]) for i, video in enumerate(videos)]))
    config = FeatureConfig(
        backbone="vgg16", weights="none", image_size=64, sampling="uniform:4", pooling="grid2", dtype="float32"
    )
    extract_features(
        manifest, tmp_path / "store.h5", grid2, config, progress=False
    )  # float32: predict's features are the stored ones
    network = SequenceModelConfig(units=8, inputs=("features", "deltas"), cell_units=3)
    train(
        tmp_path / "store.h5",
        tmp_path / "run",
        TrainConfig(models=("gru",), epochs=1, seq_len=4, test_size=0.34, network=network),
        progress=False,
    )
    run = load_run(tmp_path / "run")
    assert run.feature_config["pooling"] == "grid2"
    assert json.loads((tmp_path / "run/model/config.json").read_text())["train"]["network"]["cell_units"] == 3
    assert run.model.get_layer("cells").output.shape[2:] == (
        4,
        3,
    )  # grid2: 4 cells of 512 channels (and 512 deltas) -> 3 each
    recorded = pd.read_csv(tmp_path / "run/model/predictions.csv")
    predictions = predict_videos(run, list(recorded["path"]), top_k=2, progress=False).videos
    assert list(predictions["status"]) == ["ok"] * len(
        recorded
    )  # avg features (512) would not fit the model's 2048 inputs
    for row, (_, expected) in zip(predictions.to_dict("records"), recorded.iterrows()):
        assert row["probability_1"] == pytest.approx(expected[f"p_{row['label_1']}"], abs=1e-4)


def test_a_grid_finer_than_the_feature_map_is_refused_in_one_line(tmp_path, make_video, caplog):
    csv = manifest_csv(tmp_path / "m.csv", [(str(make_video()), "a")])
    code = main(
        [
            "features",
            "--manifest",
            str(csv),
            "--backbone",
            "vgg16",
            "--weights",
            "none",
            "--image-size",
            "64",
            "--pooling",
            "grid3",
            "--no-progress",
            "--out-dir",
            str(tmp_path / "features"),
        ]
    )
    assert code == 2
    assert "--pooling grid3 needs a last feature map of at least 3x3; vgg16 at 64 px gives 2x2" in caplog.text
    assert "Traceback" not in caplog.text and not (tmp_path / "features").exists()
