"""Config digests are recorded in stores (the file name) and runs: a change would orphan users' stores."""

from dataclasses import replace

from pipeline.classify.config import TrainConfig
from pipeline.core.config import Config
from pipeline.extract.config import FeatureConfig
from pipeline.nextframe.config import ConvLSTMConfig


def test_digests_are_pinned():
    assert FeatureConfig().digest() == "7dd06d61d3"
    assert (
        FeatureConfig(backbone="vgg16", weights="none", image_size=112, precision="bfloat16").digest() == "d8885600c2"
    )
    assert FeatureConfig().legacy_store_name() == "mobilenet_v2-imagenet-224px-7dd06d61d3.h5"  # still found
    assert FeatureConfig().store_name("demo", "/x/demo.csv") == "demo-mobilenet_v2-224px-uniform16-5e175a9f.h5"
    assert ConvLSTMConfig().digest() == "93834bc1a3"  # changed on purpose: batch 4 (was bd1910595c)
    assert ConvLSTMConfig(time_budget=0).digest() == "93834bc1a3" != ConvLSTMConfig(time_budget=2).digest()
    assert TrainConfig().digest() == "36f60d8bbc"  # changed on purpose by the network's cell_units; names no file


def test_to_dict_nests_and_digest_follows_every_field():
    config = TrainConfig()
    assert isinstance(config, Config)
    assert config.to_dict()["network"] == {
        "units": 64,
        "layers": 1,
        "bidirectional": False,
        "dropout": 0.3,
        "masking": True,
        "inputs": ("features",),
        "cell_units": 0,
    }
    assert replace(config, network=replace(config.network, units=65)).digest() != config.digest()
    assert replace(FeatureConfig(), crop="squash").digest() != FeatureConfig().digest()
