"""Errors told in one line, for logs and for the failure table."""

from __future__ import annotations


def error_line(error: BaseException, limit: int = 300, with_type: bool = True) -> str:
    """`Type: message` on one line: the message's last non-empty line, where decord, FFmpeg and TensorFlow
    put the cause after their context lines; cut to `limit` characters. Without `with_type`, just that
    line (the type name when the message is empty)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    if not with_type:
        return (last or type(error).__name__)[:limit]
    return f"{type(error).__name__}: {last}"[:limit]
