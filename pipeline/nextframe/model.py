"""A ConvLSTM that forecasts Moving MNIST 10 -> 10, after the Keras ConvLSTM example, scored as the papers score it.

The layers are the keras-io example's ("Next-frame video prediction with convolutional LSTMs"):
three ConvLSTM2D layers (5x5, 3x3 and 1x1 kernels) with normalization between, mapping frames
0..t to frame t+1. That stack is the saved `model.keras`, and one-step prediction uses it as it
is. Training is for the forecast: the same layers are stepped frame by frame in one graph
(`forecaster`) that reads frames 0..9 and then feeds each predicted frame back as the next input,
carrying the ConvLSTM states, for frames 10..19; binary cross-entropy over all 19 predicted frames
is minimised (Shi et al. 2015 also train 10 -> 10 with cross-entropy), with scheduled sampling
(`train`). Trained on true frames only, the model drifts in a rollout, fading to black or swelling
into grey blobs after a few frames.

Departures from the example:
- The head is a dynamic filter (De Brabandere et al. 2016), not a 3x3x3 Conv3D sigmoid: per pixel,
  a 1x3x3 convolution of the ConvLSTM features gives softmax weights over the pixel's
  neighbourhood in the current frame, and the prediction is that weighted mix of the frame's own
  pixels. Moving MNIST is ink that moves: this head can only move it, so intensity is kept and,
  where the model knows the motion, the shapes too. It is causal (the example's 3x3x3 head pads
  time "same", so its output for frame t+1 also sees frame t+1, which rewards copying).
- tanh rather than ReLU in the ConvLSTM cells, as in Shi et al.: fed-back states stay bounded.
- Layer normalization (over each frame's pixels and channels) where the example has batch
  normalization: batch statistics of true context frames and of fed-back predictions differ.
- CPU-sized defaults (32x32 frames, 16 filters); `--preset paper` is the 64x64, 64-filter version.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.nextframe.budget import EpochPlan
from pipeline.nextframe.config import ConvLSTMConfig
from pipeline.nextframe.moving_mnist import CANVAS, CONTEXT, DIGIT, FRAMES, STEP

log = logging.getLogger(__name__)

KERNELS = (5, 3, 1)  # the example's ConvLSTM2D kernel sizes, first layer first
CENTRE_LOGIT = 4.0  # initial head bias of the centre tap: the filter starts as mostly the pixel itself


def build_model(frame_size: int = 32, filters: int = 16):
    """The example's stack: ConvLSTM2D 5x5, 3x3, 1x1 with normalization between, and a causal dynamic-filter head.

    Input and output are `(batch, time, S, S, 1)`; output t is the predicted frame t+1. Time is
    left open, so the one model serves one-step prediction at any length; `forecaster` unrolls it.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None, frame_size, frame_size, 1), name="frames")
    x = inputs
    for i, kernel in enumerate(KERNELS):
        if i:
            x = layers.LayerNormalization(axis=(-3, -2, -1), name=f"norm_{i}")(
                x
            )  # per frame: causal, same in training and use
        # return_state, unused here, lets `forecaster` carry the states from one call to the next
        x, *_ = layers.ConvLSTM2D(
            filters,
            kernel,
            padding="same",
            return_sequences=True,
            return_state=True,
            activation="tanh",
            name=f"convlstm_{i}",
        )(x)
    size = filter_size(frame_size)
    head = [
        layers.Conv3D(size * size, (1, 3, 3), padding="same", name="head"),  # one frame deep: causal
        layers.Softmax(name="filter_weights"),
        layers.Conv3D(
            size * size, (1, size, size), padding="same", use_bias=False, trainable=False, name="neighbourhoods"
        ),
        layers.Multiply(name="weighted"),
        layers.Conv3D(1, 1, use_bias=False, trainable=False, name="blend"),
    ]
    model = keras.Model(inputs, _dynamic_filter(head, inputs, x), name="convlstm")
    neighbourhoods = np.eye(size * size, dtype=np.float32).reshape(
        1, size, size, 1, size * size
    )  # channel k: pixel k of the window
    model.get_layer("neighbourhoods").set_weights([neighbourhoods])
    model.get_layer("blend").set_weights([np.ones((1, 1, 1, size * size, 1), np.float32)])
    kernel, bias = model.get_layer("head").get_weights()
    bias[size * size // 2] = (
        CENTRE_LOGIT  # start near "copy the last frame", not a box blur that greys the rollout in a few steps
    )
    model.get_layer("head").set_weights([kernel, bias])
    return model


def filter_size(frame_size: int) -> int:
    """Side of the predicted filter: odd, reaching as far as a digit moves in one frame at this frame size."""
    reach = int(np.ceil(STEP * (CANVAS - DIGIT) * frame_size / CANVAS))
    return 2 * reach + 1


def _dynamic_filter(head, frames, features):
    """The next frames: each pixel a softmax-weighted mix of the current frame's pixels around it (De Brabandere et al.
    2016).

    The ConvLSTM features pick, per pixel, where in its neighbourhood the ink comes from; the
    prediction is built from the frame's own pixels, so it cannot wash out into a grey blob unless
    the weights spread, and its intensity stays within the frame's.
    """
    logits, softmax, neighbourhoods, weighted, blend = head
    return blend(weighted([neighbourhoods(frames), softmax(logits(features))]))


def forecaster(model, context: int = CONTEXT, steps: int = FRAMES - CONTEXT):
    """`model`'s layers stepped frame by frame: `context` true frames in, then each prediction fed back.

    Input `(batch, context, S, S, 1)`; output `(batch, context + steps - 1, S, S, 1)`, output t the
    prediction of frame t+1: one-step for t < context, then the forecast. Shares `model`'s weights.
    Each time step calls the ConvLSTM2D layers' cells directly, so the graph is one flat sequence
    of convolutions: calling the layers on one-frame sequences instead puts a while-loop per layer
    and step in the graph, and tracing that and its gradient took twice as long (see the README).
    """
    import keras
    from keras import ops

    cells = [model.get_layer(f"convlstm_{i}").cell for i in range(len(KERNELS))]
    norms = [None] + [model.get_layer(f"norm_{i}") for i in range(1, len(KERNELS))]
    head = [model.get_layer(name) for name in ("head", "filter_weights", "neighbourhoods", "weighted", "blend")]

    def step(frame, states):
        """Frame t through the stack: the prediction of frame t+1 and the cells' states after t."""
        x, carried = frame, []
        for norm, cell, state in zip(norms, cells, states):
            x, state = cell(norm(x) if norm else x, state)
            carried.append(state)
        return _dynamic_filter(head, frame[:, None], x[:, None])[:, 0], carried

    class Forecaster(keras.Model):
        def __init__(self):
            super().__init__(name="convlstm_forecaster")
            self.stack = model  # tracked: training it trains `model`'s weights
            self.teacher = keras.Variable(0.0, trainable=False, name="teacher")  # see `train`
            self.coin = keras.random.SeedGenerator(0)

        def call(self, frames, training=None):
            batch_frame = (ops.shape(frames)[0],) + tuple(frames.shape[2:4])
            states = [[ops.zeros(batch_frame + (cell.filters,))] * 2 for cell in cells]  # as ConvLSTM2D starts: zeros
            predicted = []
            for t in range(context + steps - 1):
                frame = frames[:, t] if t < context else predicted[-1]
                if training and context <= t < frames.shape[1]:  # given true frames past the context: feed some back
                    true = keras.random.uniform((ops.shape(frames)[0], 1, 1, 1), seed=self.coin) < self.teacher
                    frame = ops.where(true, frames[:, t], frame)
                frame, states = step(frame, states)
                predicted.append(frame)
            return ops.stack(predicted, axis=1)

    return Forecaster()


def train(
    model,
    train_sequences: np.ndarray,
    val_sequences: np.ndarray,
    config: ConvLSTMConfig,
    checkpoint: str | Path,
    plan: EpochPlan | None = None,
) -> pd.DataFrame:
    """Fit the forecaster (frames 0..9 in, 1..19 out); save the best epoch's `model` (lowest val_loss) to `checkpoint`.

    Scheduled sampling (Bengio et al. 2015): in training, each forecast step of a sequence is fed
    the true frame instead of the model's own prediction with a probability that falls linearly
    from 1 to 0 over the first `config.teacher_share` of the epochs, so the model first learns the motion
    from clean inputs and then to continue from its own. Validation always feeds predictions back:
    the best epoch is the best rollout. With a `plan` (`--time-budget`), training stops once the
    next epoch would not fit, and the ramp runs over the planned epochs. Returns the history, with
    each epoch's wall time in `seconds`.
    """
    import keras

    rollout = forecaster(model)
    rollout.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=["mse"],
        jit_compile=False,
    )  # XLA takes minutes to compile the unrolled graph on a CPU
    weights = Path(checkpoint).with_suffix(".best.weights.h5")
    clock = {"batches": []}

    def epoch_end(epoch, logs):
        logs.update(seconds=time.perf_counter() - clock["epoch"])
        if plan is not None and not plan.after_epoch(epoch, logs["seconds"], clock["batches"], time.perf_counter()):
            rollout.stop_training = True
        log.info(  # stderr: stdout is for results
            "epoch %d/%d: %s",
            epoch + 1,
            plan.epochs if plan else config.epochs,
            ", ".join(f"{name} {value:.4g}" for name, value in logs.items()),
        )

    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=config.lr_patience),
        keras.callbacks.ModelCheckpoint(weights, monitor="val_loss", save_best_only=True, save_weights_only=True),
        keras.callbacks.LambdaCallback(
            on_epoch_begin=lambda epoch, logs: (
                clock.update(epoch=time.perf_counter(), batches=[]),
                rollout.teacher.assign(teacher_probability(epoch, config, plan.epochs if plan else None)),
            ),
            on_train_batch_begin=lambda batch, logs: clock.update(batch=time.perf_counter()),
            on_train_batch_end=lambda batch, logs: clock["batches"].append(time.perf_counter() - clock["batch"]),
            on_epoch_end=epoch_end,
        ),
    ]
    fitted = rollout.fit(
        train_sequences[:, :-1],
        train_sequences[:, 1:],
        validation_data=(val_sequences[:, :CONTEXT], val_sequences[:, 1:]),
        batch_size=config.batch_size,
        epochs=config.epochs,
        callbacks=callbacks,
        verbose=0,
    )
    rollout.load_weights(weights)  # the best epoch, into the layers `model` shares
    model.save(checkpoint)
    weights.unlink()
    history = pd.DataFrame(fitted.history)
    history.insert(0, "epoch", fitted.epoch)
    return history


def teacher_probability(epoch: int, config: ConvLSTMConfig, epochs: int | None = None) -> float:
    """Scheduled sampling's chance, in epoch `epoch` (from 0), that a forecast step is fed the true frame.

    The ramp runs over `config.teacher_share` of `epochs` (default `config.epochs`; a time budget's plan).
    """
    ramp = (epochs or config.epochs) * config.teacher_share
    return max(0.0, 1 - epoch / ramp) if ramp else 0.0


def predict(model, sequences: np.ndarray, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s one-step predictions of frames 1..19 of `sequences` `(N, 20, S, S, 1)`, and its rollout of frames
    10..19."""
    one_step = model.predict(sequences[:, :-1], batch_size=batch_size, verbose=0)
    rolled = forecaster(model).predict(sequences[:, :CONTEXT], batch_size=batch_size, verbose=0)[:, CONTEXT - 1 :]
    return one_step, rolled
