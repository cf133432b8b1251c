"""Stage one's configuration: what decides a stored feature's meaning (`FeatureConfig`), and what a run did.

`FeatureConfig` is the one carrier of feature identity: the store records it, `load_backbone`,
`predict` and `bench` take it, and its digest names the store file.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from pipeline.core.config import Bound, Config, check_bounds
from pipeline.core.errors import InputError
from pipeline.extract.decode import CROPS, Sampling
from pipeline.extract.decoder_pool import CORES, DECODE_TIMEOUT, WORKERS
from pipeline.store.layout import POOLINGS
from pipeline.store.layout import STORES_DIR as STORES_DIR  # root folder of the stores, the store package's

FALLBACK = {"backbone": "vgg16", "weights": "none", "image_size": 112}
DTYPES = ("float16", "float32")  # stored feature dtypes
BATCH_SIZE = 32  # frames per CNN batch
DECODE_TIMEOUT_S = 120.0  # one video's decoding, before it fails as `timeout`
SHARD_SIZE = 64  # videos per shard file: a killed run loses at most this many
LOCK_TIMEOUT_S = 600.0  # waiting for another run's merge into the same store
MAX_FAILURES = 0.1  # failed videos a run may have and still exit 0: a share of the manifest (< 1) or a count (>= 1)
SCHEDULER_TIMEOUT_S = 20.0  # a dask scheduler's answer to the first request, before the address is refused

# The valid ranges of stage one's numbers: FeatureConfig checks its own, the command line builds its options'
# types from them, and `decode_all` / `extract_features` / `load_backbone` check theirs.
MAX_IMAGE_SIZE = 1024  # measured: VGG16 at batch 32 holds about 4x its largest activation, 32 GiB at 1024 px
MAX_FRAMES = 10_000  # sampled frames per video (5.5 minutes of `all` at 30 fps); a sequence model's steps too
MAX_FPS = 1000  # `fps:F` sampling: no video has more frames a second
DECODED_VIDEO_BYTES = 2**30  # a video's sampled frames at the CNN's size; decoding holds about 3.4x that
IMAGE_SIZE = Bound(32, MAX_IMAGE_SIZE, unit="pixels", why="keras.applications need >= 32")
MAX_FRAMES_BOUND = Bound(1, MAX_FRAMES, unit="frames")
BATCH = Bound(1, 1024, unit="frames")
DASK_WORKERS = Bound(1, CORES, optional=True, unit="processes", why="one per core: each holds its own TensorFlow")
SHARD = Bound(1, 10_000, unit="videos")
LOCK_TIMEOUT = Bound(0, 7 * 86_400, float, unit="seconds", why="0: do not wait")
SCHEDULER_TIMEOUT = Bound(0, 3600, float, low_open=True, unit="seconds")
RUN_OPTIONS = {
    "batch_size": BATCH,
    "workers": WORKERS,
    "dask_workers": DASK_WORKERS,
    "timeout": DECODE_TIMEOUT,
    "shard_size": SHARD,
    "lock_timeout": LOCK_TIMEOUT,
    "scheduler_timeout": SCHEDULER_TIMEOUT,
}


def check_options(**values) -> None:
    """Refuse a run option (RUN_OPTIONS: batch_size=, workers=, ...) outside its range: the Python API's twin of
    the command line's option types."""
    for name, value in values.items():
        RUN_OPTIONS[name].check(name.replace("_", " "), value)


ACTIVATION_COPIES = 4  # measured peak RSS of a batch: 2.6x (VGG16) to 3.8x (MobileNetV2) its largest layer output


def check_batch_memory(model, batch_size: int, precision: str, what: str) -> None:
    """Refuse (InputError, before any work) a CNN batch whose activations would exceed this machine's memory.

    The estimate is ACTIVATION_COPIES x the largest layer output of `model` for `batch_size` frames: VGG16 at
    1024 px and batch 32 estimates 32 GiB; unchecked, 5000 px was an out-of-memory kill (exit 137).
    """
    import psutil

    largest = max(_output_sizes(model), default=0)
    per_frame = ACTIVATION_COPIES * largest * (4 if precision == "float32" else 2)
    total = psutil.virtual_memory().total
    if per_frame * batch_size > total:
        fits = int(total // per_frame)
        lower = f"lower --batch-size to {fits} or --image-size" if fits else "lower --image-size"
        raise InputError(
            f"{what} needs about {per_frame * batch_size / 2**30:.1f} GiB for a batch of "
            f"{batch_size} frames, more than this machine's {total / 2**30:.1f} GiB of memory: {lower}"
        )


def _output_sizes(model):
    """Elements per frame of each layer output of `model` (a layer of several outputs: each; of none: skipped)."""
    import math

    for layer in model.layers:
        try:
            outputs = layer.output
        except (AttributeError, ValueError):  # a layer called more than once, or never
            continue
        for tensor in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            yield math.prod(d or 1 for d in tensor.shape[1:])


@dataclass(frozen=True)
class FeatureConfig(Config):
    """Everything that decides what a stored feature means; its hash names the store file."""

    backbone: str = "mobilenet_v2"
    weights: str = "imagenet"  # identity: imagenet, none, or sha256:<hex> of a weights file
    image_size: int = 224
    crop: str = "center"
    sampling: str = "uniform:16"
    max_frames: int = 512
    dtype: str = "float16"
    precision: str = (
        "float32"  # CNN arithmetic (float32, bfloat16 or float16): it changes the values, so it is part of the identity
    )
    pooling: str = (
        "avg"  # backbones.POOLINGS; left out of the identity when `avg`, so stores made before it keep their names
    )
    BOUNDS: ClassVar[dict] = {"image_size": IMAGE_SIZE, "max_frames": MAX_FRAMES_BOUND}

    def __post_init__(self):
        check_bounds(self)
        sampling = Sampling.parse(self.sampling, self.max_frames)  # fail early on a bad policy
        most = {"fps": MAX_FPS, "uniform": MAX_FRAMES}.get(sampling.kind)  # the indices are listed before thinning
        if most is not None and sampling.value > most:
            raise InputError(f"sampling {self.sampling}: {sampling.kind} takes at most {most:g}")
        decoded = sampling.most_frames * self.image_size**2 * 3
        if decoded > DECODED_VIDEO_BYTES:
            most = DECODED_VIDEO_BYTES // (self.image_size**2 * 3)
            raise InputError(
                f"sampling {self.sampling} with max frames {self.max_frames} at image size {self.image_size} holds "
                f"{decoded / 2**30:.1f} GiB of decoded frames per video (about 3.4x that while decoding), more than "
                f"the {DECODED_VIDEO_BYTES / 2**30:g} GiB allowed: lower --max-frames to {most} or --image-size"
            )
        if self.crop not in CROPS:
            raise InputError(f"crop {self.crop!r} is not one of {', '.join(CROPS)}")
        if self.dtype not in DTYPES:
            raise InputError(f"dtype {self.dtype!r} is not one of {', '.join(DTYPES)}")
        if self.pooling not in POOLINGS:
            raise InputError(f"pooling {self.pooling!r} is not one of {', '.join(POOLINGS)}")

    def to_dict(self) -> dict:
        config = super().to_dict()
        if config["pooling"] == "avg":
            del config["pooling"]
        return config

    def store_name(self, dataset: str = "", owner: str = "") -> str:
        """<dataset>-<backbone>-<size>px-<sampling>-<hash>.h5, e.g. `demo-mobilenet_v2-224px-uniform16-1a2b3c4d.h5`.

        Weights other than ImageNet (`random`, `w<sha256 prefix>`) and a pooling other than `avg` are
        named too; the hash covers the whole identity (`digest`) and `owner` (the manifest's resolved
        path), which the store itself records in full.
        """
        weights = {"imagenet": "", "none": "random"}.get(self.weights, self.weights.replace("sha256:", "w")[:9])
        pooling = "" if self.pooling == "avg" else self.pooling
        words = (dataset, self.backbone, weights, f"{self.image_size}px", self.sampling.replace(":", ""), pooling)
        identity = hashlib.sha256(f"{self.digest()}|{owner}".encode()).hexdigest()[:8]
        return "-".join(word for word in words if word) + f"-{identity}.h5"

    def legacy_store_name(self, owner: str = "") -> str:
        """The name stores had before `store_name` was readable (hashes only), kept so they are still found.

        With `owner` (the manifest's resolved path), the `-m<hash of it>` that `store_path_for` added.
        """
        weights = self.weights.replace("sha256:", "w")[:9]
        manifest = f"-m{hashlib.sha256(owner.encode()).hexdigest()[:6]}" if owner else ""
        return f"{self.backbone}-{weights}-{self.image_size}px-{self.digest()}{manifest}.h5"


def parse_max_failures(text: str | float) -> float:
    """`--max-failures`: a share of the manifest (0.1 or 10%) or a count of videos (3); refused with the valid forms."""
    value = str(text).strip()
    try:
        number = float(value[:-1]) / 100 if value.endswith("%") else float(value)
    except ValueError:
        number = math.nan
    whole = number >= 1 and number.is_integer() and not value.endswith("%")
    if not (0 <= number < 1 or whole):
        raise InputError(
            f"--max-failures {text!r}: give a share of the manifest's videos below 1 (0.1 or 10%) or a whole count "
            "of videos (3); 0 or --strict: any failed video exits 1"
        )
    return number


@dataclass
class ExtractSummary:
    """What a run did; `exit_code` applies the failure policy (`max_failures`) to it.

    Exit 0 when at most `max_failures` of the manifest's videos (a share below 1, or a count) are
    failed: failed in this run, known failures not retried, or missing (--skip-missing), each
    listed in the store's failure table. Exit 1 past that, and whenever videos were left neither
    stored nor failed (a lost cluster task, or a bug): a rerun is needed then, whatever the policy.
    """

    store_path: Path
    total: int = 0
    new: int = 0
    failed: int = 0
    skipped: int = 0
    known_failures: int = 0
    lost: int = 0  # videos of dask tasks that failed for good: neither stored nor failed
    missing: int = 0  # rows --skip-missing left out: in the failure table as stage `missing`
    unaccounted: int = 0  # manifest rows the merge left neither stored nor failed: a bug or a race, never silent
    frames: int = 0
    seconds: float = 0.0
    runtime: str = (
        ""  # where the CNN ran (extract_manifest); on dask the workers' runtimes, joined by "+" if they differ
    )
    fallback: str = ""  # the offline fallback's note, "" when none (extract_manifest)
    timings: dict = field(default_factory=lambda: {"decode": 0.0, "wait_decode": 0.0, "cnn": 0.0, "write": 0.0})
    failed_videos: list = field(default_factory=list)  # "path [stage]" of each row of the store's failure table
    max_failures: float = MAX_FAILURES  # see `parse_max_failures`

    @property
    def failures(self) -> int:
        """The manifest's videos in the failure table after this run."""
        return self.failed + self.known_failures + self.missing

    @property
    def allowed_failures(self) -> int:
        if self.max_failures >= 1:
            return int(self.max_failures)
        return math.floor(self.max_failures * self.total + 1e-9)

    @property
    def exit_code(self) -> int:
        return 1 if self.lost or self.unaccounted or self.failures > self.allowed_failures else 0

    def line(self) -> str:
        rate = self.frames / self.seconds if self.seconds else 0.0
        known = (
            f" ({self.known_failures} known failures not retried; --retry-failed retries them)"
            if self.known_failures
            else ""
        )
        lost = f", {self.lost} not processed (cluster task failed; rerun)" if self.lost else ""
        missing = f", {self.missing} missing files (--skip-missing)" if self.missing else ""
        missing += f", {self.unaccounted} neither stored nor failed (rerun)" if self.unaccounted else ""
        return (
            f"{self.new} new videos ok, {self.failed} failed, {self.skipped} already stored{known}{lost}{missing}; "
            f"{self.frames} frames in {self.seconds:.1f}s ({rate:.1f} frames/s) -> {self.store_path}"
        )

    def policy_line(self) -> str:
        """How many of the manifest's videos failed, against `max_failures`, and the exit status that follows."""
        share = self.failures / self.total if self.total else 0.0
        limit = f"{self.max_failures * 100:g}%" if self.max_failures < 1 else f"{int(self.max_failures)}"
        allowed = f"--max-failures {limit} ({self.allowed_failures} of {self.total} videos)"
        if self.lost or self.unaccounted:
            verdict = "some videos were neither stored nor failed: exit 1, rerun to finish them"
        elif self.failures > self.allowed_failures:
            verdict = f"more than {allowed}: exit 1"
        else:
            verdict = f"within {allowed}: exit 0" + (" (--strict: any failure exits 1)" if self.failures else "")
        return f"{self.failures} of {self.total} videos failed ({share:.0%}), {verdict}"
