"""What `predict` writes: predictions.csv / .json, windows.csv and timeline PNGs, in a folder that holds only its
outputs.

A rerun never loses the previous outputs before it has new ones: the folder is claimed first (nothing is
deleted), each video's result is appended to predictions.partial.jsonl as soon as it is known (an interrupted run
keeps what it finished there, until a run finishes), and the new outputs are written beside the old ones under
temporary names that replace them at the end (`core.atomic`: a link planted in the folder is replaced, never
written through).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
from pathlib import Path

from pipeline.core import atomic
from pipeline.predict.videos import Predictions
from pipeline.report.figures import plot_window_track, save_figure
from pipeline.runs import folders
from pipeline.runs.layout import PARTIAL_PREDICTIONS

log = logging.getLogger(__name__)


PREDICTIONS_HEADER = re.compile(r"video,status(,label_\d+,probability_\d+)*,error")  # write_outputs' predictions.csv


def write_outputs(predictions: Predictions, out_dir: str | Path, labels: list[str]) -> list[Path]:
    """predictions.csv/.json, and for windows windows.csv plus one timeline PNG per video.

    Every file is written under a temporary name first; they all replace the previous outputs together at the end
    (an error or Ctrl-C before then keeps the previous ones), and a previous prediction's windows.csv and timelines
    that this one does not have are removed after.
    """
    out_dir = prepare_output(out_dir)
    written = []
    with contextlib.ExitStack() as stack:

        def new(name: str) -> Path:
            written.append(out_dir / name)
            return stack.enter_context(atomic.replacing(written[-1]))

        predictions.videos.to_csv(new("predictions.csv"), index=False)
        new("predictions.json").write_text(predictions.videos.to_json(orient="records", indent=1))
        if len(predictions.windows):
            predictions.windows.to_csv(new("windows.csv"), index=False)
            for number, (video, track) in enumerate(predictions.windows.groupby("video", sort=False)):
                save_figure(plot_window_track(track, labels), new(f"timeline-{number:03d}-{Path(video).stem}.png"))
    for old in [out_dir / "windows.csv", *out_dir.glob("timeline-*.png")]:
        if old not in written and (old.is_symlink() or not old.is_dir()):
            old.unlink(missing_ok=True)  # a previous prediction's timelines would otherwise sit beside this one's
    return written


def prepare_output(out_dir: str | Path) -> Path:
    """Claim `out_dir` for predict's outputs (nothing in it is deleted or replaced yet: `write_outputs` does that).

    It must be a predictions folder of the tool's, or new or empty: a folder of someone else's is
    refused (folders.FolderError) before anything is decoded or written.
    """
    out_dir = Path(out_dir)
    folders.claim_folder(out_dir, "predictions", recognised=_holds_only_outputs(out_dir))
    return out_dir


@contextlib.contextmanager
def partial_results(out_dir: Path):
    """Yield `add(row)`, which appends one video's row to `out_dir`/predictions.partial.jsonl (one JSON object a
    line) at once. The file is removed when the block ends normally (the full outputs are written by then); on an
    error or Ctrl-C it keeps the rows of the videos that finished, after those an earlier interrupted run left there,
    and a warning names it."""
    path = Path(out_dir) / PARTIAL_PREDICTIONS
    if path.is_symlink() or (path.exists() and not path.is_file()):
        path.unlink()  # a link or a FIFO planted there is not written through (a folder there fails here)
    kept = 0
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666), "a") as file:

        def add(row: dict) -> None:
            nonlocal kept
            file.write(json.dumps(row) + "\n")
            file.flush()
            kept += 1

        try:
            yield add
        except BaseException:
            if kept:
                log.warning(
                    "the results of the %d videos finished before the end are in %s; the previous outputs in %s "
                    "are unchanged",
                    kept,
                    path,
                    out_dir,
                )
            elif not path.stat().st_size:
                path.unlink(missing_ok=True)
            raise
    path.unlink(missing_ok=True)


def _holds_only_outputs(folder: Path) -> bool:
    """A predictions folder an earlier version wrote (no marker): a predictions.csv that starts with
    predict's header, and nothing but predict's outputs."""
    names = ("predictions.csv", "predictions.json", "windows.csv")
    return (
        folder.is_dir()
        and not folder.is_symlink()
        and all(
            entry.is_file()
            and not entry.is_symlink()
            and (entry.name in names or (entry.name.startswith("timeline-") and entry.suffix == ".png"))
            for entry in folder.iterdir()
        )
        and _has_predictions_header(folder / "predictions.csv")  # read only once it is known to be a plain file
    )


def _has_predictions_header(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return PREDICTIONS_HEADER.fullmatch(file.readline().rstrip("\r\n")) is not None
    except OSError:
        return False
