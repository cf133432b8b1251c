"""Fine-tuning (`train --init`): a run's saved sequence model trained further on another store.

The model file is checked against the store before anything is written: the same feature
dimension (the same backbone), the same classes in the same order, the same inputs and the same
model kind; a mismatch is refused with what to pass instead. What trains is the loaded model's
architecture, so the run records that, not network options that were ignored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.classify.model_files import load_model
from pipeline.classify.models import input_dim, loaded_architecture, model_inputs, n_classes
from pipeline.core.errors import InputError

if TYPE_CHECKING:
    from pipeline.classify.config import TrainConfig

log = logging.getLogger(__name__)


def load_initial(path: str, dim: int, labels: list[str], inputs: tuple[str, ...]):
    """The model to fine-tune, checked against the store: same feature dimension, same classes."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".keras":
        raise FileNotFoundError(f"--init {path}: no such sequence model file (give a run's model/<name>.keras)")
    model = load_model(path)
    expected = input_dim(model)
    if expected != dim:
        raise InputError(
            f"--init {path} expects {expected}-dimensional features but the store has {dim}: it was trained on "
            "another backbone; extract features with the same feature config (see its config.json) or train "
            "from scratch"
        )
    known = path.parent / "labels.json"
    classes = json.loads(known.read_text()) if known.is_file() else None
    if n_classes(model) != len(labels) or (classes is not None and classes != labels):
        raise InputError(
            f"--init {path} predicts {classes or n_classes(model)} but the store has classes {labels}; "
            f"fine-tuning needs the same classes"
        )
    if model_inputs(model) != inputs:
        raise InputError(
            f"--init {path} reads {','.join(model_inputs(model))} but this run asks for --inputs {','.join(inputs)}; "
            f"give --inputs {','.join(model_inputs(model))} to fine-tune it"
        )
    return model


def with_loaded_network(config: TrainConfig, model) -> TrainConfig:
    """`config` with the architecture of the model being fine-tuned, which is what trains: config.json
    and the report must not claim network options that were ignored."""
    if model.name != config.models[0]:
        raise InputError(
            f"--init {config.init} is a {model.name} model but this run asks for --model {config.models[0]}; "
            f"give --model {model.name} to fine-tune it"
        )
    loaded = loaded_architecture(model, config.network)
    differing = [name for name, value in asdict(config.network).items() if getattr(loaded, name) != value]
    if differing:
        log.warning(
            "--init %s: the loaded model's architecture is used, not the network options %s "
            "(the model's, recorded: %s)",
            config.init,
            ", ".join(f"{name}={getattr(config.network, name)}" for name in differing),
            ", ".join(f"{name}={getattr(loaded, name)}" for name in differing),
        )
    return replace(config, network=loaded)
