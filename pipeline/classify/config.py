"""What a training run is asked to do (`TrainConfig`, recorded in the run's config.json)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from pipeline.classify.models import SequenceModelConfig
from pipeline.classify.sequences import SEQ_LEN
from pipeline.core.config import SEED, Bound, Config, check_bounds
from pipeline.core.errors import InputError
from pipeline.runs.layout import ALL_MODELS, SEQUENCE_MODELS

DATA_MODES = ("auto", "memory", "stream")
SHARE_WHY = "a split holds out 1/round(1/share) of the groups: at most half"
BATCH_COPIES = 8  # a training batch's inputs, as float32, held at once: the batch, prefetched ones, deltas, layers


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

    BOUNDS: ClassVar[dict] = {
        "seq_len": replace(SEQ_LEN, optional=True),  # None: the median stored length
        "epochs": Bound(1, 100_000),
        "batch_size": Bound(1, 4096, unit="videos"),
        "learning_rate": Bound(0, 1, float, low_open=True),
        "patience": Bound(0, 100_000, unit="epochs"),
        "lr_patience": Bound(0, 100_000, unit="epochs", why="0: constant"),
        "seed": SEED,
        "test_size": Bound(0, 0.5, float, low_open=True, why=SHARE_WHY),
        "val_size": Bound(0, 0.5, float, why="0: no validation split; " + SHARE_WHY),
    }

    def __post_init__(self):
        check_bounds(self)
        unknown = [name for name in self.models if name not in ALL_MODELS]
        if unknown or not self.models:
            raise InputError(
                f"unknown model(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(ALL_MODELS)} or all"
            )
        if self.data not in DATA_MODES:
            raise InputError(f"data mode {self.data!r} is not one of {', '.join(DATA_MODES)}")
        if self.init and (len(self.models) != 1 or self.models[0] not in SEQUENCE_MODELS):
            raise InputError(
                f"--init fine-tunes one sequence model: give --model lstm or --model gru, not {','.join(self.models)}"
            )


def parse_models(text: str) -> tuple[str, ...]:
    """`all`, or a comma-separated list such as `gru,mean`."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    return ALL_MODELS if names == ("all",) else names


def check_batch_memory(config: TrainConfig, seq_len: int, dim: int) -> None:
    """Refuse (InputError, before any work) a batch of `seq_len` x `dim` sequences whose copies in training
    (BATCH_COPIES, twice with deltas) would exceed this machine's memory."""
    import psutil

    per_video = BATCH_COPIES * seq_len * dim * 4 * len(config.network.inputs)
    total = psutil.virtual_memory().total
    if per_video * config.batch_size > total:
        fits = int(total // per_video)
        lower = f"lower --batch-size to {fits} or --seq-len" if fits else "lower --seq-len"
        raise InputError(
            f"--batch-size {config.batch_size} of {seq_len} steps x {dim} features needs about "
            f"{per_video * config.batch_size / 2**30:.1f} GiB in training, more than this machine's "
            f"{total / 2**30:.1f} GiB of memory: {lower}"
        )
