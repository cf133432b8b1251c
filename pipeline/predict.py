"""Predict on new videos with a trained run: the only place that runs both stages.

Each video is decoded and embedded with the feature config recorded in the run (same backbone,
weights identity, input size, crop, sampling, precision), turned into a sequence the way training
did, and classified. A run whose weights file is missing or differs (sha256) is refused: features
from other weights would be silently meaningless to the classifier.

With a window (seconds), a long video is classified window by window (each window sampled with
the run's policy), and the per-window probabilities are smoothed with a centred moving average
into a label track, written as CSV and as a PNG timeline (`figures.plot_window_track`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import store
from pipeline.classify.model_files import ModelFileError, find_model, load_model
from pipeline.classify.models import probabilities
from pipeline.classify.sequences import SequenceConfig, fixed_length
from pipeline.core.errors import PipelineError
from pipeline.dataset.importers import VIDEO_EXTENSIONS
from pipeline.extract.backbones import Backbone, Weights, load_backbone
from pipeline.extract.decode import Sampling, decode_job, decode_video, probe_video
from pipeline.extract.decoder_pool import DecodeFailure, decode_all, with_hook, worker_count
from pipeline.report.figures import plot_window_track, save_figure
from pipeline.runs import folders
from pipeline.runs.files import best_model, read_json, read_metrics

log = logging.getLogger(__name__)

FEATURE_KEYS = ("backbone", "weights", "image_size", "sampling", "max_frames", "crop")  # what predict reads of a run's feature config
PREDICTIONS_HEADER = re.compile(r"video,status(,label_\d+,probability_\d+)*,error")  # write_outputs' predictions.csv


class RunError(PipelineError, ValueError):
    """The run cannot be used for prediction; the message says why and what to do."""


@dataclass
class Run:
    """A trained run, ready to classify feature sequences."""

    path: Path
    model_name: str
    model: object
    labels: list[str]
    feature_config: dict
    sequence: SequenceConfig
    weights: Weights

    def classify(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (C,) for one video's frame features (n, D), as a sequence built the way training built it."""
        x, mask = fixed_length(features, self.sequence)
        return probabilities(self.model, x[None], mask[None])[0]


@dataclass
class Predictions:
    """What `predict_videos` found: one row per video, per-window tracks, and failures."""

    videos: pd.DataFrame
    windows: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def failed(self) -> int:
        return int((self.videos["status"] != "ok").sum()) if len(self.videos) else 0


def load_run(run_dir: str | Path, model: str | None = None, weights: str | None = None) -> Run:
    """Load a run's model, labels and feature config; check the weights it was trained on.

    `model` picks one of the run's models (default: the sequence model with the best validation
    accuracy). `weights` is the weights file to use when the run's is not where training found it.
    The model is loaded as data (`model_files.load_model`): a run directory never runs code.
    """
    run_dir = Path(run_dir)
    model_dir = run_dir / "model"
    if not (model_dir / "config.json").is_file():
        raise RunError(f"{run_dir} is not a trained run (no model/config.json); train one with `python -m pipeline train`")
    config = read_json(model_dir / "config.json", dict)
    labels = read_json(model_dir / "labels.json", list)
    if not labels or not all(isinstance(label, str) for label in labels):
        raise RunError(f"{model_dir / 'labels.json'} is not a list of class names")
    feature_config, sequence = _checked_config(model_dir / "config.json", config)
    name = model or _best_model(model_dir)
    try:
        loaded = load_model(find_model(model_dir, name))
    except ModelFileError as error:
        raise RunError(f"run {run_dir}: {error}") from None
    store_path = config.get("store") if isinstance(config.get("store"), str) else ""
    return Run(run_dir, name, loaded, labels, feature_config, sequence, _run_weights(feature_config, store_path, weights))


def predict_videos(run: Run, inputs: list[str | Path], *, window: float | None = None, stride: float | None = None,
                   top_k: int = 3, smooth: int = 3, progress: bool = True, workers: int | None = None, timeout: float = 120.0,
                   decode_hook=None, runtime: str = "tensorflow") -> Predictions:
    """Classify every video (folders are searched for video files); a bad video fails alone.

    Videos are decoded in the decoder pool of `features`: `workers` processes (default one per
    core), each video (each window, with `window`) limited to `timeout` seconds, so a video that
    hangs or crashes its decoder fails with that reason and the others are classified.
    `decode_hook(path)`, if given, runs in the decoder first (fault injection for tests). `runtime`:
    see `runtimes`.
    """
    from tqdm import tqdm

    fc = run.feature_config
    backbone = load_backbone(fc["backbone"], run.weights, fc["image_size"], precision=fc.get("precision", "float32"), runtime=runtime,
                             pooling=fc.get("pooling", "avg"))  # runs made before pooling was an option pooled globally
    sampling = Sampling.parse(fc["sampling"], fc["max_frames"])
    paths = expand_inputs(inputs)
    pool = {"workers": workers or worker_count(), "timeout": timeout, "ahead": 2 * (workers or worker_count()) + 1}
    if window:
        outcomes = _window_tracks(run, backbone, sampling, paths, window, stride or window, smooth, pool, decode_hook)
    else:
        outcomes = decode_all(((path, functools.partial(decode_job, str(path), fc["image_size"], sampling, fc["crop"], decode_hook))
                               for path in paths), **pool)
    rows, tracks = [], []
    with contextlib.closing(outcomes), tqdm(total=len(paths), unit="video", disable=not progress, dynamic_ncols=True) as bar:
        for path, outcome in outcomes:
            bar.update()
            if isinstance(outcome, DecodeFailure):
                log.warning("%s: [%s] %s", path, outcome.stage, outcome.message)
                rows.append({"video": str(path), "status": f"failed:{outcome.stage}", "error": outcome.message})
                continue
            if window:
                tracks.append(outcome)
                probabilities = outcome[run.labels].to_numpy().mean(axis=0)
            else:
                probabilities = run.classify(backbone.embed(outcome[0].frames))
            rows.append({"video": str(path), "status": "ok", **_top_k(probabilities, run.labels, top_k), "error": ""})
    return Predictions(pd.DataFrame(rows), pd.concat(tracks, ignore_index=True) if tracks else pd.DataFrame())


def expand_inputs(inputs: list[str | Path]) -> list[Path]:
    """Files as given (missing ones too, so they fail visibly); folders searched recursively for videos."""
    found = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.rglob("*") if p.suffix.lower() in VIDEO_EXTENSIONS)
        else:
            found.append(item)
    return found


def write_outputs(predictions: Predictions, out_dir: str | Path, labels: list[str]) -> list[Path]:
    """predictions.csv/.json, and for windows windows.csv plus one timeline PNG per video."""
    out_dir = prepare_output(out_dir)
    written = [out_dir / "predictions.csv", out_dir / "predictions.json"]
    predictions.videos.to_csv(written[0], index=False)
    written[1].write_text(predictions.videos.to_json(orient="records", indent=1))
    if len(predictions.windows):
        written.append(out_dir / "windows.csv")
        predictions.windows.to_csv(written[-1], index=False)
        for number, (video, track) in enumerate(predictions.windows.groupby("video", sort=False)):
            written.append(save_figure(plot_window_track(track, labels), out_dir / f"timeline-{number:03d}-{Path(video).stem}.png"))
    return written


def prepare_output(out_dir: str | Path) -> Path:
    """Claim `out_dir` for predict's outputs and clear a previous prediction's from it.

    It must be a predictions folder of the tool's, or new or empty: a folder of someone else's is
    refused (folders.FolderError) before anything is decoded or written.
    """
    out_dir = Path(out_dir)
    folders.claim_folder(out_dir, "predictions", recognised=_holds_only_outputs(out_dir))
    for old in [*out_dir.glob("predictions.*"), *out_dir.glob("windows.csv"), *out_dir.glob("timeline-*.png")]:
        old.unlink()  # a previous prediction's timelines would otherwise sit beside this one's
    return out_dir


# --- helpers ---------------------------------------------------------------------------------


def _holds_only_outputs(folder: Path) -> bool:
    """A predictions folder an earlier version wrote (no marker): a predictions.csv that starts with
    predict's header, and nothing but predict's outputs."""
    names = ("predictions.csv", "predictions.json", "windows.csv")
    return (folder.is_dir() and not folder.is_symlink() and _has_predictions_header(folder / "predictions.csv")
            and all(entry.is_file() and not entry.is_symlink() and (entry.name in names or (entry.name.startswith("timeline-") and entry.suffix == ".png"))
                    for entry in folder.iterdir()))


def _has_predictions_header(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return PREDICTIONS_HEADER.fullmatch(file.readline().rstrip("\r\n")) is not None
    except OSError:
        return False


def _checked_config(path: Path, config: dict) -> tuple[dict, SequenceConfig]:
    """The feature config and sequence config of a run's config.json, or RunError naming the file."""
    feature_config, sequence = config.get("feature_config"), config.get("sequence")
    missing = [key for key in FEATURE_KEYS if key not in feature_config] if isinstance(feature_config, dict) else ["feature_config"]
    if not isinstance(sequence, dict):
        missing.append("sequence")
    if missing or not isinstance(feature_config["weights"], str):
        raise RunError(f"{path} has no usable {', '.join(missing) or 'weights'}: it is not a training run's config; retrain the run")
    try:
        return feature_config, SequenceConfig(**sequence)
    except (TypeError, ValueError) as error:
        raise RunError(f"{path}: its sequence settings {sequence} are not usable: {error}") from None


def _best_model(model_dir: Path) -> str:
    if not (model_dir / "metrics.json").is_file():
        raise RunError(f"{model_dir} has no metrics.json to pick a model from; pass --model")
    return best_model(read_metrics(model_dir / "metrics.json"))


def _run_weights(feature_config: dict, store_path: str, override: str | None) -> Weights:
    """The run's weights: `imagenet`/`none` by name; a file must exist and match the recorded sha256."""
    identity = feature_config["weights"]
    if not identity.startswith("sha256:"):
        return Weights(identity)
    recorded = ""
    if not override and store_path and Path(store_path).is_file():
        recorded = store.read_attrs(store_path).get("weights_path", "")
    path = override or recorded
    if not path or not Path(path).is_file():
        raise RunError(f"the run was trained on features from a weights file ({identity}) that is not available"
                       f"{f' at {path}' if path else ''}; pass --weights PATH to that file")
    weights = Weights.parse(path)
    if weights.identity != identity:
        raise RunError(f"weights file {path} has {weights.identity}, but the run was trained on features from {identity}: "
                       "its features would not match the classifier; pass --weights with the original file")
    return weights


def _window_tracks(run: Run, backbone: Backbone, sampling: Sampling, paths: list[Path], window: float, stride: float, smooth: int,
                   pool: dict, hook) -> Iterator[tuple[Path, pd.DataFrame | DecodeFailure]]:
    """Per video, in order: its windows' probabilities with their centred moving average, or why it failed.

    Probing and every window run in the decoder pool; a window is classified as soon as it is
    decoded, so a long video never waits in memory as a whole.
    """
    fc = run.feature_config

    def job(path: Path, call):
        return functools.partial(with_hook, hook, str(path), call) if hook else call

    probes = dict(decode_all(((path, job(path, functools.partial(probe_video, str(path)))) for path in paths), **pool))
    ranges = {path: _window_ranges(*probe[:2], window, stride) for path, probe in probes.items() if not isinstance(probe, DecodeFailure)}
    jobs = ((path, job(path, functools.partial(decode_video, str(path), fc["image_size"], sampling, fc["crop"], threads=1,
                                               frame_range=(start, stop))))
            for path in paths if path in ranges for start, stop in ranges[path])
    with contextlib.closing(decode_all(jobs, **pool)) as outcomes:
        for path in paths:
            if path not in ranges:
                yield path, probes[path]
                continue
            fps = probes[path][1] or 30.0
            rows, failure = [], None
            for start, stop in ranges[path]:
                _, decoded = next(outcomes)
                if isinstance(decoded, DecodeFailure):
                    failure = failure or decoded
                elif failure is None:
                    probabilities = run.classify(backbone.embed(decoded.frames))
                    rows.append({"video": str(path), "start_s": start / fps, "end_s": stop / fps, **dict(zip(run.labels, probabilities))})
            yield path, failure or _smoothed(pd.DataFrame(rows), run.labels, smooth)


def _window_ranges(total: int, fps: float, window: float, stride: float) -> list[tuple[int, int]]:
    """Frame ranges of windows of `window` seconds every `stride` seconds (one window if the video is shorter)."""
    fps = fps or 30.0
    length, step = max(1, round(window * fps)), max(1, round(stride * fps))
    return [(start, min(total, start + length)) for start in range(0, max(1, total - length + 1), step)]


def _smoothed(track: pd.DataFrame, labels: list[str], smooth: int) -> pd.DataFrame:
    """Add each window's label, and the centred moving average over `smooth` windows with its label."""
    raw = track[labels]
    track["label"] = raw.idxmax(axis=1)
    track["probability"] = raw.max(axis=1)
    smoothed = raw.rolling(max(1, smooth), center=True, min_periods=1).mean()
    track["smoothed_label"] = smoothed.idxmax(axis=1)
    track["smoothed_probability"] = smoothed.max(axis=1)
    for label in labels:
        track[f"smoothed:{label}"] = smoothed[label]
    return track


def _top_k(probabilities: np.ndarray, labels: list[str], k: int) -> dict:
    order = np.argsort(probabilities)[::-1][:k]
    result = {}
    for rank, index in enumerate(order, start=1):
        result[f"label_{rank}"] = labels[index]
        result[f"probability_{rank}"] = float(probabilities[index])
    return result
