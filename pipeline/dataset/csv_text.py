"""Reading the text files manifests and dataset lists come in: every problem names its file, line and column.

Text must be UTF-8 (a byte-order mark and CRLF line ends are fine); CSV is parsed with its line numbers,
so a `ManifestError` can list each problem where the user will find it.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from pipeline.core.errors import PipelineError


@dataclass(frozen=True)
class Problem:
    """One validation problem: where it is (file line and column) and what is wrong."""

    line: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line else "header"
        column = _printable(self.column).replace("'", "\\x27")  # the quotes around it stay unambiguous
        return f"{where}, column '{column}': {_printable(self.message)}"


def _printable(text: str) -> str:
    """Control characters (newlines, NUL, separators) escaped, so that each problem stays one line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class ManifestError(PipelineError, ValueError):
    """The manifest cannot be used; `problems` lists every reason, each with its line."""

    def __init__(self, path: str | os.PathLike, problems: list[Problem]):
        self.path = str(path)
        self.problems = problems
        shown = "\n".join(f"  {self.path}: {p}" for p in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{len(problems)} problem(s) in manifest {self.path}:\n{shown}{more}")


def decode_text(path: Path) -> str:
    """The file's text (UTF-8, with or without a byte-order mark); ManifestError naming the first bad line."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ManifestError(path, [Problem(0, "-", f"cannot read the file ({error.strerror or error})")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ManifestError(
            path, [Problem(line, "-", f"is not UTF-8 (byte 0x{data[error.start]:02x}); save the file as UTF-8")]
        ) from None


def read_csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Every CSV record with the line it starts on (a quoted field may span lines)."""
    reader = csv.reader(io.StringIO(decode_text(path), newline=""))
    table, start = [], 1
    try:
        for values in reader:
            table.append((start, values))
            start = reader.line_num + 1
    except csv.Error as error:
        raise ManifestError(path, [Problem(reader.line_num, "-", f"is not valid CSV ({error})")]) from None
    return table


def read_header(path: Path, table: list, required: tuple[str, ...]) -> list[str]:
    """The header's column names (trimmed, lower case); ManifestError if one is missing or repeated."""
    if not table:
        raise ManifestError(
            path, [Problem(0, "-", f"the file is empty; it needs a header row with at least {','.join(required)!r}")]
        )
    header = [name.strip().lower() for name in table[0][1]]
    shown = ",".join(table[0][1])
    if len(shown) > 200:  # a huge header is not echoed whole
        shown = f"{shown[:200]}... ({len(table[0][1])} columns)"
    problems = [
        Problem(0, name, f"required column is missing (header is {shown!r})") for name in required if name not in header
    ]
    counts = Counter(header)
    problems += [
        Problem(0, name, "appears more than once in the header")
        for name in sorted(n for n, count in counts.items() if n and count > 1)
    ]
    if problems:
        raise ManifestError(path, problems)
    return header


def read_records(table: list, header: list[str], columns: tuple[str, ...]) -> tuple[list[dict], list[Problem]]:
    """Rows after the header as {column: trimmed value, "line": n}, only `columns`; blank rows skipped."""
    records, problems = [], []
    for line, values in table[1:]:
        if not any(value.strip() for value in values):
            continue
        if len(values) != len(header):
            problems.append(Problem(line, "-", f"has {len(values)} fields, the header has {len(header)}"))
            continue
        record = {name: value.strip() for name, value in zip(header, values) if name in columns}
        bad = [name for name, value in record.items() if "\x00" in value]
        if bad:
            problems.append(Problem(line, bad[0], "contains a NUL byte"))
            continue
        records.append({**record, "line": line})
    return records, problems


def read_lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines, trimmed, with their line numbers; ManifestError for a line with a NUL byte."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    lines = [
        (number, line.strip()) for number, line in enumerate(decode_text(path).split("\n"), start=1) if line.strip()
    ]
    for number, line in lines:
        if "\x00" in line:
            raise ManifestError(path, [Problem(number, "-", "contains a NUL byte")])
    return lines
