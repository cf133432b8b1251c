"""Backbones: registry, weights sources, the constant-feature guard, batching and precision."""

import numpy as np
import pytest

from pipeline.core.errors import BackboneError
from pipeline.extract.backbones import Weights, canonical_name, check_informative, load_backbone, resolve_precision
from pipeline.extract.decode import Sampling, decode_video

from helpers import VIDEOS, WEIGHTS_FILE

DOGBREEDS_SHA256 = "b5c304ecf01494f614fd05d36a075cb14f45d054af9af5ef17092bbf870e8e2f"


@pytest.fixture(scope="module")
def frames():
    return decode_video(VIDEOS / "mmaction2/test.mp4", 64, Sampling.parse("uniform:8")).frames


def test_names_and_unknown_backbone():
    assert canonical_name("MobileNet-V2") == canonical_name("mobilenet_v2") == "mobilenetv2"
    with pytest.raises(BackboneError, match="unknown backbone 'alexnet'.*vgg16"):
        load_backbone("alexnet", Weights("none"), 64)


def test_weights_file_identity_and_missing_file(shared, tmp_path):
    weights = Weights.parse(str(WEIGHTS_FILE))
    assert weights.identity == f"sha256:{DOGBREEDS_SHA256}"
    with pytest.raises(BackboneError, match="no such file"):
        Weights.parse(str(tmp_path / "absent.h5"))


def test_random_mobilenet_is_refused_and_random_vgg16_is_informative(frames):
    mobilenet = load_backbone("mobilenet_v2", Weights("none"), 64, batch_size=8)
    with pytest.raises(BackboneError, match="same features for different frames"):
        check_informative(frames, mobilenet.embed(frames), mobilenet)
    vgg = load_backbone("vgg16", Weights("none"), 64, batch_size=8)
    features = vgg.embed(frames)
    assert features.shape == (8, 512)
    check_informative(frames, features, vgg)


def test_trained_weights_file_gives_real_features(shared, frames):
    backbone = load_backbone("mobilenet_v2", Weights.parse(str(WEIGHTS_FILE)), 64, batch_size=8)
    features = backbone.embed(frames)
    assert features.shape == (8, 1280) and features.std(axis=0).mean() > 0.05
    check_informative(frames, features, backbone)


def test_frozen_graph_computes_what_the_keras_model_computes(shared, frames):
    """embed runs a constant-folded copy of the graph (batch norm folded into the convolutions)."""
    from keras.applications.mobilenet_v2 import preprocess_input

    backbone = load_backbone("mobilenet_v2", Weights.parse(str(WEIGHTS_FILE)), 64, batch_size=8)
    keras_output = backbone.model.predict(preprocess_input(frames.astype(np.float32)), verbose=0)
    np.testing.assert_allclose(backbone.embed(frames), keras_output, rtol=1e-3, atol=1e-4)


def test_weights_file_of_another_architecture_is_refused(shared):
    with pytest.raises(BackboneError, match="cannot load weights file"):
        load_backbone("vgg16", Weights.parse(str(WEIGHTS_FILE)), 64)


def test_missing_imagenet_weights_say_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for name in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # no download, even on a machine with a network
    with pytest.raises(BackboneError) as caught:
        load_backbone("mobilenet_v2", Weights("imagenet"), 96)
    text = str(caught.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in text
    assert str(tmp_path / "keras" / "models") in text and "--weights PATH" in text


def test_features_do_not_depend_on_batch_neighbours(frames):
    backbone = load_backbone("vgg16", Weights("none"), 64, batch_size=4)
    alone = backbone.embed(frames[:3])
    mixed = backbone.embed(np.concatenate([frames[5:6], frames[:3]]))[1:]
    np.testing.assert_allclose(alone, mixed, rtol=1e-5, atol=1e-6)


def test_bfloat16_stays_close_to_float32(frames):
    full = load_backbone("vgg16", Weights("none"), 64, batch_size=8, precision="float32").embed(frames)
    half = load_backbone("vgg16", Weights("none"), 64, batch_size=8, precision="bfloat16").embed(frames)
    relative = np.linalg.norm(half - full) / np.linalg.norm(full)
    assert relative < 0.05


@pytest.mark.parametrize(
    "name, weights, tolerance", [("vgg16", "none", 0.01), ("mobilenet_v2", str(WEIGHTS_FILE), 0.06)]
)
@pytest.mark.slow
def test_float16_stays_close_to_float32(frames, name, weights, tolerance):
    """The GPU's mixed float16, computed here on the CPU: the same features within float16 rounding.

    Trained MobileNetV2 loses more than random VGG16 (its depthwise layers and batch norms): the README gives both.
    """
    full = load_backbone(name, Weights.parse(weights), 64, batch_size=8, precision="float32").embed(frames)
    half = load_backbone(name, Weights.parse(weights), 64, batch_size=8, precision="float16")
    assert half.runtime == "tensorflow"  # the CPU runtimes compute float32 only
    relative = np.linalg.norm(half.embed(frames) - full) / np.linalg.norm(full)
    assert 0 < relative < tolerance  # not 0: the maths did run in float16


@pytest.mark.parametrize(
    "capabilities, expected",
    [
        (((8, 6),), "float16"),
        (((7, 0), (8, 0)), "float16"),
        (((6, 1),), "float32"),
        (((8, 6), (6, 1)), "float32"),
        ((None,), "float32"),
    ],
)
def test_auto_precision_is_float16_for_vgg_only_when_every_gpu_has_tensor_cores(monkeypatch, capabilities, expected):
    import tensorflow as tf

    gpus = [f"GPU:{index}" for index in range(len(capabilities))]
    details = dict(zip(gpus, ({"compute_capability": capability} if capability else {} for capability in capabilities)))
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: gpus if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", details.__getitem__)
    assert resolve_precision("auto", "vgg16") == expected
    assert resolve_precision("auto", "mobilenet_v2") == resolve_precision("float32", "vgg16") == "float32"
