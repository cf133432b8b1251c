"""CPU runtimes: same features as TensorFlow, fallbacks, the explicit-request error, the converted-model cache."""

import logging
import sys
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from pipeline.cli import main
from pipeline.cli.common import EXIT_BAD_INPUT
from pipeline.extract import runtimes
from pipeline.extract.backbones import Weights, load_backbone
from pipeline.extract.decode import Sampling, decode_video

from helpers import VIDEOS, WEIGHTS_FILE

INSTALLED = [name for name in runtimes.CPU_PREFERENCE if not runtimes.missing_modules(name)]
needs_runtime = pytest.mark.skipif(not INSTALLED, reason="no CPU runtime installed (pip install -e '.[cpu]')")


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh converted-model cache per test, never the user's."""
    monkeypatch.setenv("VIDEO_PIPELINE_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def frames():
    return decode_video(VIDEOS / "mmaction2/test.mp4", 64, Sampling.parse("uniform:8")).frames


@pytest.fixture(scope="module")
def tensorflow_features(frames):
    """TensorFlow's features of `frames`: with the real weights file (MobileNetV2) and random VGG16."""
    mobilenet = load_backbone("mobilenet_v2", Weights.parse(str(WEIGHTS_FILE)), 64, batch_size=8).embed(frames)
    vgg = load_backbone("vgg16", Weights("none"), 64, batch_size=4, precision="float32").embed(
        frames[:6]
    )  # 6: a padded last batch too
    return {"mobilenet_v2": mobilenet, "vgg16": vgg}


def noise(count, size):
    return np.random.default_rng(count).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def relative_error(got, reference):
    return float(np.abs(got - reference).max() / np.abs(reference).max())


@needs_runtime
@pytest.mark.parametrize("runtime", INSTALLED)
def test_real_weights_give_tensorflows_embeddings(shared, frames, tensorflow_features, runtime):
    backbone = load_backbone("mobilenet_v2", Weights.parse(str(WEIGHTS_FILE)), 64, batch_size=8, runtime=runtime)
    assert backbone.runtime == runtime
    assert relative_error(backbone.embed(frames), tensorflow_features["mobilenet_v2"]) < 1e-4


@needs_runtime
@pytest.mark.parametrize("runtime", INSTALLED)
def test_random_vgg16_gives_tensorflows_embeddings(frames, tensorflow_features, runtime):
    backbone = load_backbone("vgg16", Weights("none"), 64, batch_size=4, precision="float32", runtime=runtime)
    assert backbone.runtime == runtime
    assert relative_error(backbone.embed(frames[:6]), tensorflow_features["vgg16"]) < 1e-4


@needs_runtime
@pytest.mark.slow
def test_cache_hit_does_not_convert_again(shared, cache, monkeypatch):
    runtime = INSTALLED[0]
    first = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime=runtime)
    entry = runtimes.cache_entry(first, runtime)
    assert (entry / "key.json").is_file() and entry.parent.parent.parent == cache
    monkeypatch.setitem(
        runtimes.CONVERTERS, runtime, lambda *args: pytest.fail("converted again despite a cached model")
    )
    again = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime=runtime)
    assert again.runtime == runtime
    np.testing.assert_array_equal(again.embed(noise(4, 32)), first.embed(noise(4, 32)))
    for change in (
        {"image_size": 40},
        {"precision": "bfloat16"},
        {"weights": Weights.parse(str(WEIGHTS_FILE))},
        {"pooling": "grid2"},
    ):
        other = SimpleNamespace(
            **{**{k: getattr(first, k) for k in ("name", "weights", "image_size", "precision", "pooling")}, **change}
        )
        assert runtimes.cache_entry(other, runtime) != entry  # each is part of the key


@needs_runtime
@pytest.mark.slow
def test_damaged_cache_entry_is_converted_again(caplog):
    runtime = INSTALLED[0]
    first = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime=runtime)
    entry = runtimes.cache_entry(first, runtime)
    expected = first.embed(noise(4, 32))  # before the damage: OpenVINO maps the weights file it loaded
    weights = max((path for path in entry.iterdir() if path.name != "key.json"), key=lambda path: path.stat().st_size)
    data = bytearray(weights.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(4096)  # same size, still loadable: only the checksums tell
    weights.unlink()  # a new file: OpenVINO keeps the loaded one mapped
    weights.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO):
        again = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime=runtime)
    assert again.runtime == runtime and "is unusable" in caplog.text
    np.testing.assert_allclose(again.embed(noise(4, 32)), expected, rtol=1e-6)


def test_missing_runtime_falls_back_to_tensorflow_with_one_line(monkeypatch, caplog):
    for module in ("openvino", "onnxruntime"):
        monkeypatch.setitem(sys.modules, module, None)  # `import openvino` now raises ImportError
    with caplog.at_level(logging.INFO):
        backbone = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime="auto")
    assert backbone.runtime == "tensorflow"
    lines = [r.getMessage() for r in caplog.records if r.name == "pipeline.extract.runtimes"]
    assert len(lines) == 1 and "no CPU inference runtime is installed" in lines[0] and "pip install" in lines[0]


def test_a_runtime_that_cannot_convert_falls_back(monkeypatch, caplog):
    runtime = INSTALLED[0] if INSTALLED else pytest.skip("no CPU runtime installed")

    def broken(*args):
        raise RuntimeError("unsupported operation")

    monkeypatch.setitem(runtimes.CONVERTERS, runtime, broken)
    with caplog.at_level(logging.WARNING):
        backbone = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime=runtime)
    assert backbone.runtime == "tensorflow"
    assert (
        f"runtime: TensorFlow, because {runtime} cannot run vgg16: RuntimeError: unsupported operation" in caplog.text
    )
    assert backbone.embed(noise(4, 32)).shape == (4, 512)


def test_converted_model_that_differs_from_tensorflow_is_refused(monkeypatch, caplog):
    runtime = INSTALLED[0] if INSTALLED else pytest.skip("no CPU runtime installed")
    real = runtimes.RUNNERS[runtime]
    monkeypatch.setitem(
        runtimes.RUNNERS, runtime, lambda folder, backbone: lambda frames: real(folder, backbone)(frames) * 1.001
    )
    with caplog.at_level(logging.WARNING):
        backbone = load_backbone("vgg16", Weights("none"), 32, batch_size=4, precision="float32", runtime=runtime)
    assert backbone.runtime == "tensorflow" and "differ from TensorFlow's" in caplog.text
    assert not runtimes.cache_entry(backbone, runtime).exists()  # nothing wrong was cached


def test_bfloat16_runs_in_tensorflow():
    runtime, reason = runtimes.choose_runtime("auto", "bfloat16")
    assert runtime == "tensorflow" and "bfloat16" in reason


def test_explicit_runtime_unavailable_exits_2_with_the_install_command(make_video, tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "openvino", None)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{make_video()},a\n")
    code = main(
        [
            "features",
            "--manifest",
            str(manifest),
            "--backbone",
            "vgg16",
            "--weights",
            "none",
            "--image-size",
            "32",
            "--runtime",
            "openvino",
            "--out-dir",
            str(tmp_path / "features"),
            "--no-progress",
        ]
    )
    assert code == EXIT_BAD_INPUT
    assert "--runtime openvino: not installed" in caplog.text and "pip install" in caplog.text
    assert not (tmp_path / "features").exists()


@needs_runtime
@pytest.mark.slow
def test_stores_of_two_runtimes_and_of_dask_workers_agree_within_float16_rounding(make_video, tmp_path):
    videos = [make_video(f"v{i}.mp4", frames=10, seed=i) for i in range(3)]
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\n" + "".join(f"{v},c{i % 2}\n" for i, v in enumerate(videos)))
    runs = {
        "tensorflow": ["--runtime", "tensorflow"],
        INSTALLED[0]: ["--runtime", INSTALLED[0]],
        "dask": ["--runtime", INSTALLED[0], "--scheduler", "local", "--dask-workers", "1"],
    }  # the workers convert or load it
    stores = {}

    def features(name, *options):
        store = tmp_path / name / "store.h5"
        code = main(
            [
                "features",
                "--manifest",
                str(manifest),
                "--backbone",
                "vgg16",
                "--weights",
                "none",
                "--image-size",
                "32",
                "--precision",
                "float32",
                "--sampling",
                "uniform:4",
                "--batch-size",
                "8",
                "--store",
                str(store),
                "--workers",
                "1",
                "--no-progress",
                *options,
            ]
        )
        assert code == 0
        with h5py.File(store, "r") as f:
            return f.attrs["runtime"], f.attrs["feature_config"], f["features"][:].astype(np.float32)

    for name, options in runs.items():
        stores[name] = features(name, *options)
    assert [runtime for runtime, _, _ in stores.values()] == [
        "tensorflow",
        INSTALLED[0],
        INSTALLED[0],
    ]  # dask: what the workers ran
    manifest.write_text(manifest.read_text().replace(",c0", ",relabelled"))
    assert (
        features(INSTALLED[0], "--runtime", "tensorflow")[0] == INSTALLED[0]
    )  # a rerun that embeds nothing names no runtime
    _, tf_config, tf_features = stores.pop("tensorflow")
    for _, config, features in stores.values():
        assert config == tf_config  # the runtime is not part of the feature identity
        np.testing.assert_allclose(features, tf_features, rtol=2**-10, atol=1e-3 * np.abs(tf_features).max())
