"""ConvLSTM next-frame prediction on Moving MNIST, after the Keras ConvLSTM example.

Data comes in the original Moving MNIST layout, `(20, N, 64, 64)` uint8 (frame, sequence, row,
column): read from `mnist_test_seq.npy` where the user has it, or generated in that layout (two
digits bouncing in a 64x64 frame, as in Srivastava et al. 2015) from MNIST digit files or, offline
and by default, from the 8x8 digits scikit-learn ships, upscaled. The model follows the keras-io
example "Next-frame video prediction with convolutional LSTMs": three ConvLSTM2D layers (5x5, 3x3
and 1x1 kernels, ReLU, batch normalization between) and a Conv3D sigmoid head, trained with binary
cross-entropy and Adam to map frames 0..18 to frames 1..19. It is scored on held-out sequences
against copying the last frame, one step ahead and over a 10-frame rollout from the first 10.

Departures from the example (the report explains the first):
- The example's 3x3x3 Conv3D head pads time "same", so its output for frame t+1 also sees the
  hidden state after reading frame t+1, the very frame it predicts: training rewards copying, and
  the last output, the one a rollout uses, is never trained on a true next frame. Here the head
  is 1x3x3, so output t sees only the hidden state of frame t, which carries all frames before.
  (Shifting time with a padding layer instead is not safe: TensorFlow 2.21's graph optimizer
  silently drops a ZeroPadding3D that feeds a Conv3D once the model has trained.)
- Defaults are sized for a 2-core CPU (a few minutes): 32x32 frames (2x2 block means of the 64x64
  originals), 16 filters, 400 sequences, 8 epochs; batch normalization momentum is 0.9, since
  Keras's 0.99 leaves the inference statistics behind in runs of a few hundred steps.
- The full example is `--data mnist_test_seq.npy --sequences 1000 --frame-size 64 --filters 64
  --batch-size 5 --epochs 20 --patience 10 --lr-patience 5`: about 2.7 s per sequence and epoch
  on a 2-core CPU, so some 14 hours; a GPU is advised.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import struct
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import report

log = logging.getLogger(__name__)

FRAMES, CANVAS, DIGIT = 20, 64, 28  # the original layout: 20 frames of 64x64, 28x28 digits
CONTEXT = 10  # rollout: frames given before the model predicts the rest on its own
STEP = 0.1  # digit speed per frame, as a share of the free range (64 - 28 px): 3.6 px
EPSILON = 1e-7  # probability clipping for binary cross-entropy, as in Keras
BN_MOMENTUM = 0.9  # see the module docstring


@dataclass(frozen=True)
class ConvLSTMConfig:
    """Everything that decides a run's data, model and training; stored with the run."""

    data: str = "sklearn"  # mnist_test_seq.npy, MNIST digits (idx file or folder, mnist.npz), or sklearn
    sequences: int = 400  # generated, or the first N of the .npy file
    seed: int = 0
    frame_size: int = 32  # model frames are block averages of the 64x64 originals
    filters: int = 16  # per ConvLSTM2D layer (the example: 64)
    batch_size: int = 8
    epochs: int = 8
    patience: int = 4  # epochs without val_loss improvement before stopping (the example: 10)
    lr_patience: int = 2  # epochs without improvement before the learning rate drops tenfold (the example: 5)
    learning_rate: float = 1e-3
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    examples: int = 3  # held-out sequences drawn as PNG strips and GIFs

    def __post_init__(self):
        if self.frame_size < 8 or CANVAS % self.frame_size:
            raise ValueError(f"frame size {self.frame_size} must be at least 8 and divide {CANVAS}")
        if not 0 < self.val_fraction < 1 or not 0 < self.test_fraction < 1:
            raise ValueError("val and test fractions must lie between 0 and 1")
        split_sizes(self.sequences, self.val_fraction, self.test_fraction)  # fail early on too few sequences

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


# --- data ------------------------------------------------------------------------------------


def moving_mnist(data: str = "sklearn", sequences: int = 400, seed: int = 0, test_fraction: float = 0.1) -> tuple[np.ndarray, str]:
    """Sequences `(20, N, 64, 64)` uint8 and a description of their source.

    `data` is a `.npy` file in the original layout (its first `sequences` are taken), MNIST digits
    to generate from (an idx images file, `.gz` or not, a folder holding them, or Keras's
    `mnist.npz`), or `sklearn`. Generated data puts the test sequences last and draws their digits
    from a share of the digit images that the other sequences never use, so the held-out score is
    on unseen handwriting too.
    """
    if data != "sklearn" and not Path(data).exists():
        raise FileNotFoundError(f"no data at {data}: give mnist_test_seq.npy, MNIST digit files or a folder of them, or sklearn")
    if str(data).endswith(".npy"):
        frames = load_moving_mnist(data, sequences)
        return frames, f"{data}: its first {frames.shape[1]} sequences"
    digits, digits_source = read_digits(None if data == "sklearn" else data)
    order = np.random.default_rng([seed, 1]).permutation(len(digits))
    held_out = max(1, round(len(digits) * test_fraction))
    n_train, n_val, n_test = split_sizes(sequences, test_fraction=test_fraction)
    frames = np.concatenate([
        generate_moving_mnist(digits[order[held_out:]], n_train + n_val, seed=[seed, 2]),
        generate_moving_mnist(digits[order[:held_out]], n_test, seed=[seed, 3]),
    ], axis=1)
    return frames, (f"generated: {sequences} sequences of two bouncing digits from {digits_source}, seed {seed}; "
                    f"the {n_test} test sequences use {held_out} digit images no other sequence uses")


def load_moving_mnist(path: str | Path, sequences: int | None = None) -> np.ndarray:
    """The first `sequences` of a `mnist_test_seq.npy`-style file, memory-mapped so a subset is cheap."""
    frames = np.load(path, mmap_mode="r")
    check_layout(frames)
    if sequences is not None and sequences > frames.shape[1]:
        raise ValueError(f"{path} holds {frames.shape[1]} sequences, fewer than the {sequences} asked for")
    return np.array(frames[:, :sequences])


def check_layout(frames: np.ndarray) -> None:
    """Refuse anything but the original layout: (20 frames, N sequences, 64, 64) uint8."""
    if frames.ndim != 4 or frames.shape[0] != FRAMES or frames.shape[2:] != (CANVAS, CANVAS) or frames.dtype != np.uint8:
        raise ValueError(f"expected Moving MNIST layout ({FRAMES}, N, {CANVAS}, {CANVAS}) uint8, got {frames.shape} {frames.dtype}")


def generate_moving_mnist(digits: np.ndarray, sequences: int, seed=0, per_sequence: int = 2) -> np.ndarray:
    """`sequences` of `per_sequence` digits bouncing off the edges of a 64x64 frame, `(20, N, 64, 64)` uint8.

    Srivastava et al.'s recipe: each digit starts at a random place and moves at a fixed speed in
    a random direction, reversing at the edges; overlapping digits combine by maximum.
    """
    rng = np.random.default_rng(seed)
    paths = _trajectories(rng, sequences * per_sequence).reshape(FRAMES, sequences, per_sequence, 2)
    chosen = rng.integers(len(digits), size=(sequences, per_sequence))
    frames = np.zeros((FRAMES, sequences, CANVAS, CANVAS), np.uint8)
    for t in range(FRAMES):
        for s in range(sequences):
            for d in range(per_sequence):
                y, x = paths[t, s, d]
                window = frames[t, s, y:y + DIGIT, x:x + DIGIT]
                np.maximum(window, digits[chosen[s, d]], out=window)
    return frames


def _trajectories(rng: np.random.Generator, count: int) -> np.ndarray:
    """Top-left corners `(20, count, 2)` int of `count` digits moving at speed STEP and bouncing off the edges."""
    position = rng.random((count, 2))  # (y, x) as shares of the free range 0..64-28
    angle = rng.random(count) * 2 * np.pi
    velocity = np.stack([np.sin(angle), np.cos(angle)], axis=1) * STEP
    corners = np.empty((FRAMES, count, 2))
    for t in range(FRAMES):
        position += velocity
        outside = (position <= 0) | (position >= 1)
        velocity[outside] *= -1
        position = np.clip(position, 0, 1)
        corners[t] = position
    return (corners * (CANVAS - DIGIT)).astype(int)


def read_digits(path: str | Path | None = None) -> tuple[np.ndarray, str]:
    """Digit images `(n, 28, 28)` uint8 and where they came from.

    `path`: Keras's `mnist.npz` (train and test images), an idx images file (`.gz` or not), or a
    folder whose `*images-idx3-ubyte*` files are all read; None: scikit-learn's bundled digits.
    """
    if path is None:
        return sklearn_digits(), "scikit-learn's 1797 8x8 digits, upscaled to 28x28"
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path) as archive:
            images = np.concatenate([archive["x_train"], archive["x_test"]])
        kind = "Keras mnist.npz"
    else:
        files = sorted(path.glob("*images-idx3-ubyte*")) if path.is_dir() else [path]
        if not files:
            raise FileNotFoundError(f"no *images-idx3-ubyte* file in {path}")
        images = np.concatenate([read_idx_images(file) for file in files])
        kind = "MNIST idx"
    if images.shape[1:] != (DIGIT, DIGIT):
        raise ValueError(f"{path}: digit images are {images.shape[1:]}, expected {DIGIT}x{DIGIT}")
    return images.astype(np.uint8), f"{kind} {path} ({len(images)} images)"


def read_idx_images(path: str | Path) -> np.ndarray:
    """An idx3 image file (magic 2051: count, rows, columns, then uint8 pixels), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        header = file.read(16)
        if len(header) < 16 or header[:4] != struct.pack(">I", 2051):
            raise ValueError(f"{path} is not an idx image file (they start with the magic number 2051)")
        _, count, rows, columns = struct.unpack(">IIII", header)
        pixels = np.frombuffer(file.read(count * rows * columns), np.uint8)
    if pixels.size != count * rows * columns:
        raise ValueError(f"{path} is truncated: {pixels.size} of {count * rows * columns} pixels")
    return pixels.reshape(count, rows, columns)


def sklearn_digits() -> np.ndarray:
    """scikit-learn's 8x8 digits (values 0..16) made to look like MNIST: a 20x20 digit centred in 28x28, 0..255."""
    from PIL import Image
    from sklearn.datasets import load_digits

    images = load_digits().images.astype(np.float32) * (255 / 16)
    margin = (DIGIT - 20) // 2
    out = np.zeros((len(images), DIGIT, DIGIT), np.uint8)
    for i, image in enumerate(images):
        big = np.asarray(Image.fromarray(image).resize((20, 20), Image.BICUBIC))
        out[i, margin:margin + 20, margin:margin + 20] = np.clip(big, 0, 255).round()
    return out


def split_sizes(sequences: int, val_fraction: float = 0.1, test_fraction: float = 0.1) -> tuple[int, int, int]:
    """Train, validation and test counts; the test sequences are the last, validation just before them."""
    n_test = max(1, round(sequences * test_fraction))
    n_val = max(1, round(sequences * val_fraction))
    if sequences - n_test - n_val < 1:
        raise ValueError(f"{sequences} sequences are too few for a training, validation and test split")
    return sequences - n_test - n_val, n_val, n_test


def model_frames(frames: np.ndarray, frame_size: int) -> np.ndarray:
    """Original layout to the model's: `(N, 20, S, S, 1)` float32 in 0..1, each pixel the mean of a block."""
    block = frames.shape[-1] // frame_size
    sequences = frames.transpose(1, 0, 2, 3).astype(np.float32) / 255
    shape = sequences.shape[:2] + (frame_size, block, frame_size, block)
    return sequences.reshape(shape).mean(axis=(3, 5))[..., None]


# --- model -----------------------------------------------------------------------------------


def build_model(frame_size: int = 32, filters: int = 16, learning_rate: float = 1e-3):
    """The example's model: ConvLSTM2D 5x5, 3x3, 1x1 with batch normalization between, and a causal 1x3x3 Conv3D head.

    Input and output are `(batch, time, S, S, 1)`; output t is the predicted frame t+1. Time is
    left open, so one model serves training (19 frames) and rollouts of any length.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(None, frame_size, frame_size, 1))
    x = inputs
    for kernel in (5, 3, 1):
        if kernel != 5:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM)(x)
        x = layers.ConvLSTM2D(filters, kernel, padding="same", return_sequences=True, activation="relu")(x)
    outputs = layers.Conv3D(1, (1, 3, 3), padding="same", activation="sigmoid")(x)  # one frame deep: causal
    model = keras.Model(inputs, outputs, name="convlstm")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="binary_crossentropy", metrics=["mse"])
    return model


def train(model, train_sequences: np.ndarray, val_sequences: np.ndarray, config: ConvLSTMConfig, checkpoint: str | Path) -> pd.DataFrame:
    """Fit frames 0..18 to frames 1..19; keep the best epoch (lowest val_loss) in `checkpoint`. Returns the history."""
    import keras

    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=config.patience),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=config.lr_patience),
        keras.callbacks.ModelCheckpoint(checkpoint, monitor="val_loss", save_best_only=True),
        keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: log.info(  # to stderr: stdout is for results
            "epoch %d/%d: %s", epoch + 1, config.epochs, ", ".join(f"{name} {value:.4g}" for name, value in logs.items()))),
    ]
    fitted = model.fit(train_sequences[:, :-1], train_sequences[:, 1:], validation_data=(val_sequences[:, :-1], val_sequences[:, 1:]),
                       batch_size=config.batch_size, epochs=config.epochs, callbacks=callbacks, verbose=0)
    history = pd.DataFrame(fitted.history)
    history.insert(0, "epoch", fitted.epoch)
    return history


def rollout(model, context: np.ndarray, steps: int, batch_size: int = 8) -> np.ndarray:
    """Predict `steps` frames after `context` `(N, T, S, S, 1)`, each fed back as the next input."""
    frames = context
    for _ in range(steps):
        predicted = model.predict(frames, batch_size=batch_size, verbose=0)[:, -1:]
        frames = np.concatenate([frames, predicted], axis=1)
    return frames[:, context.shape[1]:]


# --- evaluation ------------------------------------------------------------------------------


def evaluate(model, sequences: np.ndarray, batch_size: int = 8) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Per-frame MSE and BCE of the model and of copying the last frame, on held-out `(N, 20, S, S, 1)`.

    Returns the per-frame table (task `one-step`: frames 1..19, each from the true frames before
    it; task `rollout`: frames 10..19 from frames 0..9 alone) and both predictions.
    """
    one_step = model.predict(sequences[:, :-1], batch_size=batch_size, verbose=0)
    rolled = rollout(model, sequences[:, :CONTEXT], FRAMES - CONTEXT, batch_size)
    copy_last = np.repeat(sequences[:, CONTEXT - 1:CONTEXT], FRAMES - CONTEXT, axis=1)
    rows = [_frame_scores("one-step", 1, sequences[:, 1:], one_step, sequences[:, :-1]),
            _frame_scores("rollout", CONTEXT, sequences[:, CONTEXT:], rolled, copy_last)]
    return pd.concat(rows, ignore_index=True), one_step, rolled


def summarise(per_frame: pd.DataFrame) -> pd.DataFrame:
    """One row per task: scores averaged over its frames, and the model's MSE as a share of the baseline's."""
    summary = per_frame.drop(columns="frame").groupby("task", sort=False).mean().reset_index()
    summary.insert(3, "mse_ratio", summary["mse"] / summary["mse_copy_last"])
    return summary


def _frame_scores(task: str, first: int, truth: np.ndarray, predicted: np.ndarray, baseline: np.ndarray) -> pd.DataFrame:
    axes = (0, 2, 3, 4)  # everything but time
    return pd.DataFrame({
        "task": task, "frame": np.arange(first, first + truth.shape[1]),
        "mse": ((predicted - truth) ** 2).mean(axis=axes), "mse_copy_last": ((baseline - truth) ** 2).mean(axis=axes),
        "bce": _bce(truth, predicted).mean(axis=axes), "bce_copy_last": _bce(truth, baseline).mean(axis=axes),
    })


def _bce(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    p = np.clip(predicted, EPSILON, 1 - EPSILON)
    return -(truth * np.log(p) + (1 - truth) * np.log(1 - p))


# --- the whole run ---------------------------------------------------------------------------


def default_run_dir(config: ConvLSTMConfig, reports_root: str | Path = "reports") -> Path:
    """reports/convlstm-<data>, the data named `sklearn` or by its file or folder name."""
    return Path(reports_root) / f"convlstm-{_data_name(config)}"


def _data_name(config: ConvLSTMConfig) -> str:
    return "sklearn" if config.data == "sklearn" else Path(config.data).name.split(".")[0]


def run_convlstm(config: ConvLSTMConfig, run_dir: str | Path, overwrite: bool = False) -> dict:
    """Data, training, held-out evaluation and the report in `run_dir`; returns the headline metrics.

    `run_dir` gets `model/` (model.keras, config.json, history.csv, per_frame.csv, metrics.json),
    the report (index.html, report.md, images) and run.json; the index of its parent folder is
    rewritten so the run is listed. An earlier run there is replaced only if `overwrite`.
    """
    import keras

    run_dir = Path(run_dir)
    if (run_dir / "run.json").is_file() and overwrite:
        shutil.rmtree(run_dir)
    elif run_dir.exists() and any(run_dir.iterdir()):
        reason = "pass --overwrite to replace it" if (run_dir / "run.json").is_file() else "it is not a run directory (no run.json)"
        raise ValueError(f"{run_dir} exists and is not empty; {reason}, or choose another with --run")
    model_dir = run_dir / "model"
    model_dir.mkdir(parents=True, exist_ok=True)
    frames, source = moving_mnist(config.data, config.sequences, config.seed, config.test_fraction)
    sequences = model_frames(frames, config.frame_size)
    n_train, n_val, n_test = split_sizes(len(sequences), config.val_fraction, config.test_fraction)
    train_set, val_set, test_set = np.split(sequences, [n_train, n_train + n_val])
    log.info("data: %s; %d train, %d validation, %d test sequences at %dx%d", source, n_train, n_val, n_test, config.frame_size, config.frame_size)

    keras.utils.set_random_seed(config.seed)
    model = build_model(config.frame_size, config.filters, config.learning_rate)
    checkpoint = model_dir / "model.keras"
    started = time.perf_counter()
    history = train(model, train_set, val_set, config, checkpoint)
    train_seconds = time.perf_counter() - started
    best = keras.models.load_model(checkpoint)
    per_frame, one_step, rolled = evaluate(best, test_set, config.batch_size)
    summary = summarise(per_frame)

    scores = summary.set_index("task")
    metrics = {f"{task.replace('-', '_')}_{name}": float(scores.loc[task, name])
               for task in scores.index for name in ("mse", "mse_copy_last", "bce", "bce_copy_last")}
    metrics.update(train_seconds=round(train_seconds, 1), epochs_run=len(history),
                   best_epoch=int(history["val_loss"].idxmin()) + 1, parameters=best.count_params())
    (model_dir / "config.json").write_text(json.dumps({**config.to_dict(), "digest": config.digest(), "source": source}, indent=1))
    (model_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    history.to_csv(model_dir / "history.csv", index=False)
    per_frame.to_csv(model_dir / "per_frame.csv", index=False)
    log.info("one-step MSE %.5f (copy last frame %.5f); rollout MSE %.5f (copy last frame %.5f); trained in %.0fs",
             metrics["one_step_mse"], metrics["one_step_mse_copy_last"], metrics["rollout_mse"], metrics["rollout_mse_copy_last"], train_seconds)

    shown = slice(0, min(config.examples, n_test))
    write_report(run_dir, config, source, (n_train, n_val, n_test), history, per_frame, summary, metrics,
                 test_set[shown], one_step[shown], rolled[shown])
    headline = ("one_step_mse", "one_step_mse_copy_last", "rollout_mse", "rollout_mse_copy_last", "train_seconds")
    report.write_run_summary(run_dir, kind="convlstm", dataset=f"Moving MNIST ({_data_name(config)}), {config.sequences} sequences",
                             source=source, model=f"ConvLSTM {config.filters} filters, {config.frame_size}px",
                             metrics={k: metrics[k] for k in headline}, config=config.to_dict())
    report.write_index(run_dir.parent)
    return metrics


# --- report ----------------------------------------------------------------------------------


def write_report(run_dir: Path, config: ConvLSTMConfig, source: str, split: tuple[int, int, int], history: pd.DataFrame,
                 per_frame: pd.DataFrame, summary: pd.DataFrame, metrics: dict, truth: np.ndarray, one_step: np.ndarray,
                 rolled: np.ndarray) -> Path:
    """index.html and its Markdown twin report.md, with their images beside them."""
    report.plot_curves(history, run_dir / "curves.png", metrics=("loss", "mse"))
    _plot_per_frame(per_frame, run_dir / "per_frame.png")
    examples = []
    for i in range(len(truth)):
        _strip(truth[i], one_step[i], rolled[i], run_dir / f"example_{i}.png")
        _gif(truth[i], one_step[i], rolled[i], run_dir / f"example_{i}.gif")
        examples.append(f"example_{i}")

    ratio = metrics["one_step_mse"] / metrics["one_step_mse_copy_last"]
    rolled_rows = per_frame[per_frame["task"] == "rollout"]
    ahead = (rolled_rows["mse"] < rolled_rows["mse_copy_last"]).cumprod().sum()  # leading frames where the rollout wins
    verdict = (f"One-step MSE is {ratio:.0%} of the copy-last-frame baseline's on {split[2]} held-out sequences"
               f" ({metrics['one_step_mse']:.5f} against {metrics['one_step_mse_copy_last']:.5f}). The rollout from frames "
               f"0..{CONTEXT - 1} beats repeating frame {CONTEXT - 1} " +
               (f"up to frame {CONTEXT + ahead - 1}" if ahead else "at no frame") +
               f"; over its {FRAMES - CONTEXT} frames its MSE is {metrics['rollout_mse']:.5f} against {metrics['rollout_mse_copy_last']:.5f}.")
    notes = [] if ratio < 1 else ["The model does not beat copying the last frame: train longer, on more sequences, or with more filters."]
    if config.data == "sklearn":
        notes.append("Digits are scikit-learn's 8x8 images upscaled, not MNIST: scores are not comparable with published Moving MNIST results.")
    data_table = pd.DataFrame({"": ["source", "sequences (train / validation / test)", "model frames"],
                               "value": [source, " / ".join(map(str, split)), f"{FRAMES} x {config.frame_size}x{config.frame_size} (block means of {CANVAS}x{CANVAS})"]})
    training_table = pd.DataFrame({"": ["training time", "epochs run (best)", "parameters", "final learning rate"],
                                   "value": [f"{metrics['train_seconds']:.0f} s", f"{metrics['epochs_run']} ({metrics['best_epoch']})", f"{metrics['parameters']:,}",
                                             f"{history['learning_rate'].iloc[-1]:.2g}" if "learning_rate" in history else ""]})
    settings = pd.DataFrame({"": list(config.to_dict()), "value": [str(v) for v in config.to_dict().values()]})
    about = (f"Frames 1..{FRAMES - 1} are each predicted from the true frames before them (one-step); frames {CONTEXT}..{FRAMES - 1} are "
             f"predicted from frames 0..{CONTEXT - 1} alone, each prediction fed back as input (rollout). The baseline copies the last "
             f"frame it was given. Scores are means over pixels (0..1) and held-out sequences at the model's resolution; BCE clips "
             f"probabilities to [{EPSILON:g}, 1-{EPSILON:g}], so the baseline's confident mistakes dominate its BCE and MSE is the fairer comparison.")
    head = ("The Conv3D head is 1x3x3, so each prediction sees only the state after the frames before it "
            "(the keras-io example's 3x3x3 head also sees the frame it predicts).")

    html_body = "".join([
        "".join(report.warning(note) for note in notes),
        f"<p>{verdict}</p>",
        "<h2>Data</h2>", report.table(data_table),
        "<h2>Held-out scores</h2>", report.table(summary, "{:.5f}"), f"<p class='muted'>{about}</p>",
        "<img src='per_frame.png' alt='per-frame MSE'>",
        "<h2>Training</h2>", report.table(training_table), "<img src='curves.png' alt='loss curves'>", f"<p class='muted'>{head}</p>",
        "<h2>Held-out examples</h2><p class='muted'>Rows: true frames, one-step predictions, rollout from the first "
        f"{CONTEXT} frames. The GIFs show the same three side by side (the rollout panel shows the given frames until frame {CONTEXT}).</p>",
        "".join(f"<p><img src='{name}.png' alt='{name}'><br><img src='{name}.gif' alt='{name} animated'></p>" for name in examples),
        "<h2>Settings</h2>", report.table(settings),
    ])
    (run_dir / "index.html").write_text(report.page(f"ConvLSTM next-frame prediction: {run_dir.name}", html_body))
    markdown = "\n\n".join([
        f"# ConvLSTM next-frame prediction: {run_dir.name}", *[f"> {note}" for note in notes], verdict,
        "## Data", _markdown_table(data_table),
        "## Held-out scores", _markdown_table(summary), about, "![per-frame MSE](per_frame.png)",
        "## Training", _markdown_table(training_table), "![loss curves](curves.png)", head,
        "## Held-out examples", *[f"![{name}]({name}.png)\n\n![{name} animated]({name}.gif)" for name in examples],
        "## Settings", _markdown_table(settings),
    ])
    (run_dir / "report.md").write_text(markdown + "\n")
    return run_dir / "index.html"


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        text = f"{value:.5f}" if isinstance(value, float) else str(value)
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(cell, frame.columns)) + " |", "|" + " --- |" * len(frame.columns)]
    lines += ["| " + " | ".join(map(cell, row)) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _plot_per_frame(per_frame: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    fig, axis = plt.subplots(figsize=(7, 3.5))
    for (task, rows), colour in zip(per_frame.groupby("task", sort=False), ("tab:blue", "tab:orange")):
        axis.plot(rows["frame"], rows["mse"], color=colour, marker="o", label=f"{task}: ConvLSTM")
        axis.plot(rows["frame"], rows["mse_copy_last"], color=colour, linestyle="--", label=f"{task}: copy last frame")
    axis.set_xlabel("predicted frame")
    axis.set_ylabel("MSE")
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _strip(truth: np.ndarray, one_step: np.ndarray, rolled: np.ndarray, path: Path) -> None:
    """A PNG grid: true frames 0..19 over one-step predictions (1..19) over the rollout (10..19)."""
    plt = _pyplot()
    rows = (("true", 0, truth), ("one-step", 1, one_step), ("rollout", CONTEXT, rolled))
    fig, axes = plt.subplots(len(rows), FRAMES, figsize=(FRAMES * 0.75, len(rows) * 0.85), squeeze=False)
    for r, (label, first, frames) in enumerate(rows):
        for t, axis in enumerate(axes[r]):
            axis.set_xticks([])
            axis.set_yticks([])
            if t >= first:
                axis.imshow(frames[t - first, ..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                axis.set_frame_on(False)  # not axis("off"): that would hide the row label too
        axes[r, 0].set_ylabel(label, fontsize=8)
    for t, axis in enumerate(axes[0]):
        axis.set_title(str(t), fontsize=8)
    fig.subplots_adjust(left=0.05, right=0.995, top=0.85, bottom=0.02, wspace=0.05, hspace=0.1)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _gif(truth: np.ndarray, one_step: np.ndarray, rolled: np.ndarray, path: Path, height: int = 128) -> None:
    """An animated GIF of true | one-step | rollout panels, frames 0..19, scaled up without smoothing."""
    from PIL import Image

    panels = [truth, np.concatenate([np.zeros_like(truth[:1]), one_step]), np.concatenate([truth[:CONTEXT], rolled])]
    scale = max(1, height // truth.shape[1])
    pixels = [np.kron((frames[..., 0] * 255).round().astype(np.uint8), np.ones((1, scale, scale), np.uint8)) for frames in panels]
    gap = np.full((FRAMES, truth.shape[1] * scale, 4), 128, np.uint8)
    movie = np.concatenate([pixels[0], gap, pixels[1], gap, pixels[2]], axis=2)
    images = [Image.fromarray(frame) for frame in movie]
    images[0].save(path, save_all=True, append_images=images[1:], duration=200, loop=0)


def _pyplot():
    """matplotlib's pyplot on the file-only backend, so reports render without a display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
