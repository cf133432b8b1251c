"""A training run's progress: a tqdm bar per epoch on stderr, scores as short text, TensorBoard logs.

The HTML report is a run's self-contained view; the TensorBoard logs (`model/tensorboard/<model>/`)
are for people who compare runs there: `tensorboard --logdir reports` lists every run's models.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
TENSORBOARD = "model/tensorboard"  # <run>/<this>/<model>/train|validation/events.* (a folder of layout.RUN_TREES)


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


def tensorboard_logs(model_dir: Path, name: str) -> list:
    """Keras's TensorBoard callback writing model `name`'s per-epoch scalars (loss, accuracy, their val_
    twins, learning rate) under `model_dir`/tensorboard/`name` (`model_dir`: a run's model/); no graph or
    profile, so the logs stay a few KB. Nothing (and a warning) where the `tensorboard` package, which the
    callback needs, is missing."""
    if importlib.util.find_spec("tensorboard") is None:
        log.warning("%s: no TensorBoard logs: the tensorboard package is not installed (pip install tensorboard)", name)
        return []
    import keras

    return [
        keras.callbacks.TensorBoard(
            Path(model_dir).parent / TENSORBOARD / name,
            write_graph=False,
            profile_batch=0,
            write_steps_per_second=False,
        )
    ]
