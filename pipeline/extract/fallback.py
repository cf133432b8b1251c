"""The backbone a run uses: loaded before any decoding, with the offline fallback (random VGG16) where
ImageNet weights are unavailable and `--fallback` allows it; `auto` precision resolved for the backbone used."""

from __future__ import annotations

import logging
from dataclasses import replace

from pipeline.core.errors import BackboneError
from pipeline.extract.backbones import Backbone, Weights, load_backbone, resolve_precision
from pipeline.extract.config import (
    FALLBACK,
    FeatureConfig,
)

log = logging.getLogger(__name__)


def resolve_backbone(
    config: FeatureConfig,
    weights: Weights,
    batch_size: int,
    fallback: bool,
    runtime: str = "tensorflow",
    fallback_size: int = FALLBACK["image_size"],
) -> tuple[Backbone, FeatureConfig, str]:
    """Load the backbone before any decoding; with `fallback`, replace unavailable ImageNet weights.

    The fallback is FALLBACK's random backbone at `fallback_size` px (the demo's is smaller, for a 2-core CPU).
    `config.precision` may be `auto`, resolved for the backbone actually used. Returns the backbone,
    the config actually used, and the fallback note ("" when none) that is printed and recorded in the store.
    """
    requested = config.precision
    config = replace(config, precision=resolve_precision(requested, config.backbone))
    try:
        return (
            load_backbone(
                config.backbone, weights, config.image_size, batch_size, config.precision, runtime, config.pooling
            ),
            config,
            "",
        )
    except BackboneError as error:
        if not (fallback and weights.kind == "imagenet"):
            raise
        note = (
            f"ImageNet weights for {config.backbone} are unavailable offline, so this store uses the offline fallback: "
            f"random frozen {FALLBACK['backbone']} at {fallback_size} px (informative for the demo, "
            "not for real "
            f"data). Reason: {error}"
        )
        log.warning(note)
        used = replace(
            config,
            **{**FALLBACK, "image_size": fallback_size},
            precision=resolve_precision(requested, FALLBACK["backbone"]),  # float32 asked stays float32
        )
        return (
            load_backbone(
                used.backbone, Weights("none"), used.image_size, batch_size, used.precision, runtime, used.pooling
            ),
            used,
            note,
        )
