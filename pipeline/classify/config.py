"""What a training run is asked to do (`TrainConfig`, recorded in the run's config.json)."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.classify.models import SequenceModelConfig
from pipeline.core.config import Config
from pipeline.core.errors import InputError
from pipeline.runs.layout import ALL_MODELS, SEQUENCE_MODELS

DATA_MODES = ("auto", "memory", "stream")


@dataclass(frozen=True)
class TrainConfig(Config):
    """Everything a training run was asked to do; recorded in config.json."""

    models: tuple[str, ...] = ("gru",)
    seq_len: int | None = None  # None: the median stored video length
    policy: str = "pad"  # pad (with a mask) or resample
    network: SequenceModelConfig = field(default_factory=SequenceModelConfig)
    epochs: int = 100
    batch_size: int = 32
    learning_rate: float = 1e-3
    patience: int = 15
    class_weights: bool = False
    seed: int = 0
    test_size: float = 0.15
    val_size: float = 0.15
    data: str = "auto"  # auto, memory or stream
    init: str = ""  # a .keras sequence model to fine-tune
    lr_patience: int = (
        0  # epochs without a better validation loss before the learning rate drops LR_FACTOR-fold; 0: constant
    )

    def __post_init__(self):
        unknown = [name for name in self.models if name not in ALL_MODELS]
        if unknown or not self.models:
            raise InputError(
                f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ALL_MODELS)} or all"
            )
        if self.data not in DATA_MODES:
            raise InputError(f"data mode {self.data!r} is not one of {', '.join(DATA_MODES)}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InputError("epochs and batch size must be at least 1")
        if self.init and (len(self.models) != 1 or self.models[0] not in SEQUENCE_MODELS):
            raise InputError(
                f"--init fine-tunes one sequence model: give --model lstm or --model gru, not {','.join(self.models)}"
            )


def parse_models(text: str) -> tuple[str, ...]:
    """`all`, or a comma-separated list such as `gru,mean`."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    return ALL_MODELS if names == ("all",) else names
