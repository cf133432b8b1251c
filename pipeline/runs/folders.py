"""Folders the tool made: a marker file names them, and only they are replaced or written into.

Commands are pointed at folders users already have, so nothing is deleted or overwritten on the
strength of a folder's name or of a `model/` inside it. The tool writes `MARKER` into the run
directories, demo folders and report roots it creates; anything else is refused with a message
naming the path. Folders written by earlier versions (no marker) are recognised by their exact
contents: a run directory holding `model/config.json`, `metrics.json` and `labels.json` and nothing
but the files a run writes (by their exact names), a demo folder with its `.render-version` stamp,
a report root whose `index.html` is the runs index.

Every file the tool writes into such a folder goes through `core.atomic` (a new file renamed over
the name), so a symbolic or hard link planted in a folder someone sent is replaced, never written
through; the marker itself is read only when it is a plain file.

A training run is written into a hidden temporary sibling (`.<name>.partial-*`) that replaces the
old run only when the new one is complete, so a crash, a kill or a refused input keeps the old run.
The sibling holds a lock while it is being written; one whose lock is free was left by a killed
run and is removed by the next run of the same name. Replacing a run (`--overwrite`) deletes only
what runs write: a marked run that holds anything else (the user's notes.txt) is refused, naming it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from pipeline.core import atomic
from pipeline.core.errors import InputError, PipelineError
from pipeline.runs.layout import (
    ALL_MODELS,
    CONVLSTM_EXAMPLE,
    CONVLSTM_FILES,
    CONVLSTM_MODEL_FILES,
    KINDS,
    MARKER,
    MODEL_FILES,
    MODEL_REPORT_FILES,
    MODEL_SUFFIXES,
    PREDICTION_FILES,
    RUN_FILES,
    RUNS_INDEX_HEAD,
    TIMELINE,
    foreign_in_trees,
    in_tree,
)

log = logging.getLogger(__name__)


class FolderError(PipelineError, ValueError):
    """A folder the tool did not make, or may not replace; the message names it."""


def mark(folder: Path, kind: str) -> Path:
    """Record that the tool made `folder` as a `kind` folder."""
    if kind not in KINDS:
        raise InputError(f"unknown folder kind {kind!r}")
    return atomic.write_text(
        Path(folder) / MARKER,
        json.dumps(
            {
                "tool": "video-feature-pipeline",
                "kind": kind,
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
        )
        + "\n",
    )


def made_by_tool(folder: Path, kind: str) -> bool:
    """True when `folder` holds the tool's marker for `kind`: a plain file (a link is never the tool's, nor read)."""
    path = Path(folder) / MARKER
    try:
        return stat.S_ISREG(path.lstat().st_mode) and json.loads(path.read_text()).get("kind") == kind
    except (OSError, ValueError, AttributeError):
        return False


def is_run_dir(folder: Path) -> bool:
    """A run directory this tool made: marked, or a training or ConvLSTM run of an earlier version (see
    `_why_not_a_run`)."""
    folder = Path(folder)
    return folder.is_dir() and _why_not_a_run(folder) is None


def check_replaceable(run_dir: Path, overwrite: bool) -> None:
    """Refuse to write a run over anything but nothing, an empty folder, or (with `overwrite`) a run
    (marked, or a classification or ConvLSTM run of an earlier version, by its exact files)."""
    run_dir = _absolute(run_dir)
    if not run_dir.exists() and not run_dir.is_symlink():
        return
    if not run_dir.is_dir() or run_dir.is_symlink():
        raise FolderError(
            f"{run_dir} exists and is a file or a symbolic link, not a run directory; choose another with --run"
        )
    if not any(run_dir.iterdir()):
        return
    if not overwrite:
        raise FolderError(
            f"run directory {run_dir} exists; pass --overwrite to replace it, or --run for another directory"
        )
    reason = _why_not_a_run(run_dir)
    if reason:
        raise FolderError(
            f"{run_dir} does not look like a run directory made by this tool (no {MARKER}, and {reason}): "
            f"not replacing it; choose another directory with --run"
        )
    foreign = _foreign_files(run_dir, ANY_RUN, (TIMELINE, CONVLSTM_EXAMPLE, LEFTOVER))
    if foreign:
        shown = ", ".join(foreign[:10]) + (f" and {len(foreign) - 10} more" if len(foreign) > 10 else "")
        raise FolderError(
            f"run directory {run_dir} holds files a run never writes, which replacing it would delete: {shown}; "
            "move them out of the run (or choose another directory with --run), then rerun"
        )


@contextlib.contextmanager
def staged_run(run_dir: Path, overwrite: bool):
    """Yield a marked temporary sibling of `run_dir` to write a run into; it replaces `run_dir`
    only when the block finishes. On an exception (Ctrl-C included) it is removed and the old run stays."""
    run_dir = _absolute(run_dir)
    check_replaceable(run_dir, overwrite)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(run_dir)
    staging = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.partial-", dir=run_dir.parent))
    staging.chmod(0o777 & ~atomic.umask())  # mkdtemp's 0700 would make a shared run private
    with open(mark(staging, "run"), "rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held while writing: a free lock means its writer died
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            check_replaceable(run_dir, overwrite)  # another command may have written there meanwhile
        except FolderError as error:
            kept = Path(tempfile.mkdtemp(prefix=f"{run_dir.name}.finished-", dir=run_dir.parent))
            os.replace(staging, kept)  # visible, so the next run does not take it for a killed run's leftovers
            raise FolderError(f"{error}. The finished run is kept in {kept}") from None
        _replace(staging, run_dir)


def claim_folder(folder: Path, kind: str, recognised: bool = False) -> None:
    """Make sure `folder` is a `kind` folder of the tool's before writing into it: one it made, a
    missing or empty folder (created and marked), or one `recognised` from an earlier version (marked)."""
    folder = Path(folder)
    if folder.is_symlink():
        raise FolderError(
            f"{folder} is a symbolic link (to {os.readlink(folder)}): not writing through it; choose a real folder"
        )
    if made_by_tool(folder, kind):
        return
    if folder.exists() and not folder.is_dir():
        raise FolderError(f"{folder} exists and is not a directory")
    if folder.is_dir() and any(folder.iterdir()) and not recognised:
        raise FolderError(
            f"{folder} is not empty and is not a {kind} folder made by this tool (no {MARKER}): "
            f"not writing into it; choose a new or empty folder"
        )
    folder.mkdir(parents=True, exist_ok=True)
    mark(folder, kind)


def claim_report_root(root: Path) -> str | None:
    """Claim `root` for the runs index (`index.html`); None when it is (now) a report root, else why not.

    A report root is a folder with the tool's marker, a missing or empty one, one whose `index.html`
    is the runs index an earlier version wrote, or one without `index.html` that holds only runs
    (training or ConvLSTM), the benchmark's `bench/` and hidden files such as `.gitkeep`.
    """
    root = Path(root)
    if made_by_tool(root, "reports"):
        return None
    index = root / "index.html"
    if root.exists() and not root.is_dir():
        return f"{root} is not a directory"
    if root.is_dir() and any(root.iterdir()):
        if index.is_symlink() or (index.exists() and not index.is_file()):
            return f"{index} is a symbolic link or not a plain file: this tool never wrote it"
        if index.exists():
            if not _is_runs_index(index):
                return f"{index} was not written by this tool"
        else:
            foreign = [
                entry.name
                for entry in root.iterdir()
                if not entry.name.startswith(".") and not is_run_dir(entry) and not _is_bench_output(entry)
            ]
            if foreign:
                return f"{root} holds {foreign[0]}, which is not a run, and no {MARKER}"
    root.mkdir(parents=True, exist_ok=True)
    mark(root, "reports")
    return None


# --- helpers ---------------------------------------------------------------------------------


def _why_not_a_run(folder: Path) -> str | None:
    """The one rule for a run directory (None: it is one, else why not): the tool's marker, or the exact
    files of a ConvLSTM run or a training run of an earlier version."""
    if made_by_tool(folder, "run") or _is_convlstm_run(folder):
        return None
    return _not_a_training_run(folder)


TRAINING_RUN = {
    ".": RUN_FILES | {model + suffix for model in ALL_MODELS for suffix in MODEL_REPORT_FILES},
    "model": MODEL_FILES | {model + suffix for model in ALL_MODELS for suffix in MODEL_SUFFIXES},
    "predictions": PREDICTION_FILES,
}  # folder -> the names of the files a training run, its report and predict's default output folder write
CONVLSTM_RUN = {".": CONVLSTM_FILES, "model": CONVLSTM_MODEL_FILES}
ANY_RUN = {where: TRAINING_RUN[where] | CONVLSTM_RUN.get(where, set()) for where in TRAINING_RUN}
LEFTOVER = re.compile(r".*/" + atomic.TEMPORARY.pattern)  # a temporary file of a killed writer, anywhere in a run


def _not_a_training_run(folder: Path) -> str | None:
    """Why `folder` is not a training run directory of an earlier version (None if it is one): it must
    hold model/config.json, metrics.json and labels.json, and nothing but the files a training run,
    its report and predict's default output folder predictions/ write, by their exact names (TensorBoard logs
    and thumbnail strips by their patterns: `RUN_TREES`)."""
    return _unexpected_layout(
        folder, ("config.json", "metrics.json", "labels.json"), TRAINING_RUN, (TIMELINE, LEFTOVER)
    )


def _is_convlstm_run(folder: Path) -> bool:
    """A ConvLSTM run directory (`convlstm`), by the exact names of the files it writes."""
    required = ("config.json", "metrics.json", "model.keras")
    return folder.is_dir() and _unexpected_layout(folder, required, CONVLSTM_RUN, (CONVLSTM_EXAMPLE, LEFTOVER)) is None


def _unexpected_layout(
    folder: Path, required: tuple[str, ...], expected: dict[str, set[str]], patterns: tuple[re.Pattern, ...]
) -> str | None:
    """Why `folder` is not laid out as `expected` (see `_foreign_files`), with the `required` files in model/;
    None if it is."""
    for name in required:
        if not (folder / "model" / name).is_file():
            return f"no model/{name}"
    foreign = foreign_in_trees(folder) + _foreign_files(folder, expected, patterns)
    return f"it holds {foreign[0]}, which a run never has" if foreign else None


def _foreign_files(folder: Path, expected: dict[str, set[str]], patterns: tuple[re.Pattern, ...]) -> list[str]:
    """What `folder` holds besides `expected` (folder -> plain file names; `patterns` match other `folder/name`s
    allowed): entries by their path in the run (a folder with `/`, a link with `->`)."""
    foreign = []
    for where, names in expected.items():
        for entry in sorted((folder / where).iterdir()) if (folder / where).is_dir() else ():
            shown = entry.name if where == "." else f"{where}/{entry.name}"
            if entry.is_symlink():
                foreign.append(f"{shown} -> {os.readlink(entry)} (a symbolic link)")
            elif (where == "." and entry.name in expected or in_tree(where, entry.name)) and entry.is_dir():
                continue
            elif not (
                entry.is_file() and (entry.name in names or any(p.fullmatch(f"{where}/{entry.name}") for p in patterns))
            ):
                foreign.append(shown + ("/" if entry.is_dir() else ""))
    return foreign


def _absolute(run_dir: Path) -> Path:
    """`run_dir` with its real parent, so that `.`, `..` or `x/..` name a folder and its parent; the last
    component is kept as given, so a symbolic link there is still seen (and refused)."""
    absolute = Path(os.path.abspath(run_dir))
    if absolute == absolute.parent:
        raise FolderError(f"{run_dir} is the file system root, not a run directory; choose another with --run")
    return absolute.parent.resolve() / absolute.name


def _is_bench_output(folder: Path) -> bool:
    """`make bench`'s reports/bench/: bench.json and bench.md."""
    return (
        folder.name == "bench"
        and folder.is_dir()
        and all(entry.is_file() and entry.suffix in (".json", ".md") for entry in folder.iterdir())
    )


def _is_runs_index(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as file:
            return file.read(len(RUNS_INDEX_HEAD)) == RUNS_INDEX_HEAD
    except OSError:
        return False


def _remove_stale_partials(run_dir: Path) -> None:
    """Remove temporary siblings of `run_dir` left by killed runs (their lock is free)."""
    for partial in run_dir.parent.glob(f".{run_dir.name}.partial-*"):
        if partial.is_symlink() or not made_by_tool(partial, "run"):
            continue
        with open(partial / MARKER, "rb") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # another run is writing it
            log.info("removing %s, left by a run that was killed", partial)
            shutil.rmtree(partial, ignore_errors=True)


def _replace(staging: Path, target: Path) -> None:
    """Put `staging` where `target` is, atomically where the OS can exchange two paths."""
    if not target.exists():
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging)  # now the old run
    else:
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
        os.rename(target, old / target.name)
        os.rename(staging, target)
        shutil.rmtree(old)


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one step with Linux's renameat2(RENAME_EXCHANGE); False where unsupported."""
    function = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if function is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if function(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP):
        return False
    raise OSError(code, os.strerror(code), str(second))
