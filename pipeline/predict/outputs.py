"""What `predict` writes: predictions.csv / .json, windows.csv and timeline PNGs, in a folder that holds only its
outputs."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from pipeline.predict.videos import Predictions
from pipeline.report.figures import plot_window_track, save_figure
from pipeline.runs import folders

log = logging.getLogger(__name__)


PREDICTIONS_HEADER = re.compile(r"video,status(,label_\d+,probability_\d+)*,error")  # write_outputs' predictions.csv


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
            written.append(
                save_figure(plot_window_track(track, labels), out_dir / f"timeline-{number:03d}-{Path(video).stem}.png")
            )
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


def _holds_only_outputs(folder: Path) -> bool:
    """A predictions folder an earlier version wrote (no marker): a predictions.csv that starts with
    predict's header, and nothing but predict's outputs."""
    names = ("predictions.csv", "predictions.json", "windows.csv")
    return (
        folder.is_dir()
        and not folder.is_symlink()
        and _has_predictions_header(folder / "predictions.csv")
        and all(
            entry.is_file()
            and not entry.is_symlink()
            and (entry.name in names or (entry.name.startswith("timeline-") and entry.suffix == ".png"))
            for entry in folder.iterdir()
        )
    )


def _has_predictions_header(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return PREDICTIONS_HEADER.fullmatch(file.readline().rstrip("\r\n")) is not None
    except OSError:
        return False
