"""The tool's errors: one base the command line maps to exit 2, and each error told in one line.

Every error raised on purpose derives from `PipelineError`: the user's input, options, files or
environment, with a message that names the file, row or option and says what to do. Anything else
reaching the command line is an internal error (exit 3) and is reported with where it happened.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of the errors the tool raises on purpose; the command line prints the message and exits 2."""


class InputError(PipelineError, ValueError):
    """A value the tool cannot use: an option out of range, a bad argument or config field."""


class BackboneError(PipelineError, ValueError):
    """The backbone cannot be built or produces unusable features; the message says what to do."""


def error_line(error: BaseException, limit: int = 300, with_type: bool = True) -> str:
    """`Type: message` on one line: the message's last non-empty line, where decord, FFmpeg and TensorFlow
    put the cause after their context lines; cut to `limit` characters. Without `with_type`, just that
    line (the type name when the message is empty)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if not with_type:
        return (last or type(error).__name__)[:limit]
    return f"{type(error).__name__}: {last}"[:limit]
