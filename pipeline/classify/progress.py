"""A training run's progress on stderr: a tqdm bar per epoch, and scores as short text."""

from __future__ import annotations

import sys
import time


def score_text(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


class EpochProgress:
    """A tqdm bar per epoch on stderr (stdout is for results), and each epoch's duration."""

    def __init__(self, name: str, epochs: int, steps: int, enabled: bool):
        self.name, self.epochs, self.steps, self.enabled = name, epochs, steps, enabled
        self.seconds: list[float] = []

    def callback(self):
        import keras

        return keras.callbacks.LambdaCallback(
            on_epoch_begin=self._begin, on_train_batch_end=self._batch, on_epoch_end=self._end
        )

    def _begin(self, epoch, logs=None):
        from tqdm import tqdm

        self.started = time.perf_counter()
        self.bar = tqdm(
            total=self.steps,
            desc=f"{self.name} epoch {epoch + 1}/{self.epochs}",
            unit="batch",
            file=sys.stderr,
            disable=not self.enabled,
            dynamic_ncols=True,
        )

    def _batch(self, batch, logs=None):
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{(logs or {}).get('loss', float('nan')):.3f}", refresh=False)

    def _end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self.started)
        self.bar.set_postfix({key: f"{value:.3f}" for key, value in (logs or {}).items() if isinstance(value, float)})
        self.bar.close()
