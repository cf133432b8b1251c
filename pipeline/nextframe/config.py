"""What decides a ConvLSTM run's data, model and training (`ConvLSTMConfig`, stored with the run), and the named
presets."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import ClassVar

from pipeline.core.config import SEED, Bound, Config, check_bounds
from pipeline.core.errors import InputError
from pipeline.nextframe.moving_mnist import CANVAS, split_sizes


@dataclass(frozen=True)
class ConvLSTMConfig(Config):
    """Everything that decides a run's data, model and training; stored with the run."""

    data: str = "sklearn"  # mnist_test_seq.npy, MNIST digits (idx file or folder, mnist.npz), or sklearn
    sequences: int = 800  # generated, or the first N of the .npy file
    seed: int = 0
    frame_size: int = 32  # model frames are block averages of the 64x64 originals
    filters: int = 16  # per ConvLSTM2D layer (the example: 64)
    batch_size: int = 4  # twice the updates of batch 8 in about the same time on a CPU: a better rollout (README)
    epochs: int = 6
    patience: int = 3  # epochs without val_loss improvement before stopping (the example: 10)
    lr_patience: int = 2  # epochs without improvement before the learning rate drops tenfold (the example: 5)
    learning_rate: float = 1e-3
    teacher_share: float = (
        0.5  # share of the epochs over which true frames fed to the forecast give way to its own predictions
    )
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    examples: int = 3  # held-out sequences drawn as PNG strips and GIFs
    time_budget: float = 0.0  # minutes for the whole run; epochs stop when the next would not fit (0: no budget)
    BOUNDS: ClassVar[dict] = {
        "sequences": Bound(1, 20_000, why="the paper preset takes 12,500; 20,000 at 64 px are 6.5 GB as float32"),
        "seed": SEED,
        "frame_size": Bound(8, CANVAS, unit="pixels", why=f"a divisor of {CANVAS}"),
        "filters": Bound(1, 256),
        "batch_size": Bound(1, 1024, unit="sequences"),
        "epochs": Bound(1, 10_000),
        "patience": Bound(0, 10_000, unit="epochs"),
        "lr_patience": Bound(0, 10_000, unit="epochs"),
        "learning_rate": Bound(0, 1, float, low_open=True),
        "examples": Bound(0, 50),
        "time_budget": Bound(0, 100_000, float, unit="minutes", why="0: no budget"),
    }

    def __post_init__(self):
        check_bounds(self)
        if self.frame_size < 8 or CANVAS % self.frame_size:
            raise InputError(f"frame size {self.frame_size} must be at least 8 and divide {CANVAS}")
        if not 0 <= self.teacher_share <= 1:
            raise InputError(f"teacher share {self.teacher_share} must lie between 0 and 1")
        if not 0 < self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise InputError("val and test fractions must lie between 0 and 1")
        split_sizes(self.sequences, self.val_fraction, self.test_fraction)  # fail early on too few sequences
        if not 0 <= self.time_budget < 10_000:
            raise InputError(f"time budget {self.time_budget} must be a number of minutes >= 0 (0: none)")

    def to_dict(self) -> dict:
        config = super().to_dict()
        if not config["time_budget"]:
            del config["time_budget"]  # no budget: the digest of runs made before the option stays
        return config


# `--preset`: named starting points; options given beside a preset override it.
PRESETS = {
    "cpu": ConvLSTMConfig(),
    # The papers' setting: 64x64 frames, 10,000 training sequences (plus 10% validation and 10% test), 64 filters.
    "paper": ConvLSTMConfig(
        sequences=12500, frame_size=64, filters=64, batch_size=16, epochs=20, patience=5, lr_patience=3
    ),
}


def preset(name: str, **overrides) -> ConvLSTMConfig:
    """The preset `name` with `overrides` (those not None) applied."""
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **{key: value for key, value in overrides.items() if value is not None})
