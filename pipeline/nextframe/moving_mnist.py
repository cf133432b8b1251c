"""Moving MNIST: the original `(20, N, 64, 64)` uint8 layout, read from `mnist_test_seq.npy` or generated.

Generated data follows Srivastava et al. 2015: two digits bouncing in a 64x64 frame, from MNIST
digit files or, offline and by default, from the 8x8 digits scikit-learn ships, upscaled. The
ConvLSTM that forecasts these sequences is in `convlstm.py`.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from pipeline.core.errors import InputError

FRAMES, CANVAS, DIGIT = 20, 64, 28  # the original layout: 20 frames of 64x64, 28x28 digits
CONTEXT = 10  # frames given before the rest are forecast: 10 -> 10, as in Shi et al. 2015
STEP = 0.1  # digit speed per frame, as a share of the free range (64 - 28 px): 3.6 px


# --- data ------------------------------------------------------------------------------------


def moving_mnist(
    data: str = "sklearn", sequences: int = 400, seed: int = 0, test_fraction: float = 0.1
) -> tuple[np.ndarray, str]:
    """Sequences `(20, N, 64, 64)` uint8 and a description of their source.

    `data` is a `.npy` file in the original layout (its first `sequences` are taken), MNIST digits
    to generate from (an idx images file, `.gz` or not, a folder holding them, or Keras's
    `mnist.npz`), or `sklearn`. Generated data puts the test sequences last and draws their digits
    from a share of the digit images that the other sequences never use, so the held-out score is
    on unseen handwriting too.
    """
    if data != "sklearn" and not Path(data).exists():
        raise FileNotFoundError(
            f"no data at {data}: give mnist_test_seq.npy, MNIST digit files or a folder of them, or sklearn"
        )
    if str(data).endswith(".npy"):
        frames = load_moving_mnist(data, sequences)
        return frames, f"{data}: its first {frames.shape[1]} sequences"
    digits, digits_source = read_digits(None if data == "sklearn" else data)
    order = np.random.default_rng([seed, 1]).permutation(len(digits))
    held_out = max(1, round(len(digits) * test_fraction))
    n_train, n_val, n_test = split_sizes(sequences, test_fraction=test_fraction)
    frames = np.concatenate(
        [
            generate_moving_mnist(digits[order[held_out:]], n_train + n_val, seed=[seed, 2]),
            generate_moving_mnist(digits[order[:held_out]], n_test, seed=[seed, 3]),
        ],
        axis=1,
    )
    return frames, (
        f"generated: {sequences} sequences of two bouncing digits from {digits_source}, seed {seed}; "
        f"the {n_test} test sequences use {held_out} digit images no other sequence uses"
    )


def load_moving_mnist(path: str | Path, sequences: int | None = None) -> np.ndarray:
    """The first `sequences` of a `mnist_test_seq.npy`-style file, memory-mapped so a subset is cheap."""
    frames = np.load(path, mmap_mode="r")
    check_layout(frames)
    if sequences is not None and sequences > frames.shape[1]:
        raise InputError(f"{path} holds {frames.shape[1]} sequences, fewer than the {sequences} asked for")
    return np.array(frames[:, :sequences])


def check_layout(frames: np.ndarray) -> None:
    """Refuse anything but the original layout: (20 frames, N sequences, 64, 64) uint8."""
    if (
        frames.ndim != 4
        or frames.shape[0] != FRAMES
        or frames.shape[2:] != (CANVAS, CANVAS)
        or frames.dtype != np.uint8
    ):
        raise InputError(
            f"expected Moving MNIST layout ({FRAMES}, N, {CANVAS}, {CANVAS}) uint8, got {frames.shape} {frames.dtype}"
        )


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
                window = frames[t, s, y : y + DIGIT, x : x + DIGIT]
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
        raise InputError(f"{path}: digit images are {images.shape[1:]}, expected {DIGIT}x{DIGIT}")
    return images.astype(np.uint8), f"{kind} {path} ({len(images)} images)"


def read_idx_images(path: str | Path) -> np.ndarray:
    """An idx3 image file (magic 2051: count, rows, columns, then uint8 pixels), gzipped or not."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as file:
        header = file.read(16)
        if len(header) < 16 or header[:4] != struct.pack(">I", 2051):
            raise InputError(f"{path} is not an idx image file (they start with the magic number 2051)")
        _, count, rows, columns = struct.unpack(">IIII", header)
        pixels = np.frombuffer(file.read(count * rows * columns), np.uint8)
    if pixels.size != count * rows * columns:
        raise InputError(f"{path} is truncated: {pixels.size} of {count * rows * columns} pixels")
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
        out[i, margin : margin + 20, margin : margin + 20] = np.clip(big, 0, 255).round()
    return out


def split_sizes(sequences: int, val_fraction: float = 0.1, test_fraction: float = 0.1) -> tuple[int, int, int]:
    """Train, validation and test counts; the test sequences are the last, validation just before them."""
    n_test = max(1, round(sequences * test_fraction))
    n_val = max(1, round(sequences * val_fraction))
    if sequences - n_test - n_val < 1:
        raise InputError(f"{sequences} sequences are too few for a training, validation and test split")
    return sequences - n_test - n_val, n_val, n_test


def model_frames(frames: np.ndarray, frame_size: int) -> np.ndarray:
    """Original layout to the model's: `(N, 20, S, S, 1)` float32 in 0..1, each pixel the mean of a block."""
    block = frames.shape[-1] // frame_size
    sequences = frames.transpose(1, 0, 2, 3).astype(np.float32) / 255
    shape = sequences.shape[:2] + (frame_size, block, frame_size, block)
    return sequences.reshape(shape).mean(axis=(3, 5))[..., None]


def upscale(frames: np.ndarray, size: int = CANVAS) -> np.ndarray:
    """Model frames `(..., S, S, 1)` back to `size` pixels by repeating each pixel, to score beside the originals."""
    block = size // frames.shape[-2]
    return np.repeat(np.repeat(frames, block, axis=-3), block, axis=-2)
