"""What every stage's configuration dataclass knows: how to serialise and hash itself, and its fields' valid ranges.

Stores and runs record `digest()` (a store file is named by it), so its recipe must never change:
sha256 of the JSON of `dataclasses.asdict` with sorted keys, first 10 hex digits.

`Bound` is one numeric field's valid range. A dataclass lists its bounds in `BOUNDS` and checks them in
`__post_init__` (`check_bounds`), and the command line builds its option types from the same bounds, so the
Python API, a config read from a run or store, and the command line refuse a value alike.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from dataclasses import asdict, dataclass

from pipeline.core.errors import InputError


class Config:
    """Mixin for the frozen configuration dataclasses (FeatureConfig, TrainConfig, ...)."""

    BOUNDS: dict = {}  # field name -> Bound, checked by check_bounds

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]


@dataclass(frozen=True)
class Bound:
    """A number's valid range: `low` to `high` inclusive (either excluded with `low_open`, `high_open`), whole
    with `kind=int`.

    NaN, infinities, booleans and (for `kind=int`) fractions are refused; `optional` lets None through (a
    default decided later). `unit` and `why` end the range's description in the messages and `--help`.
    """

    low: float
    high: float
    kind: type = int
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    unit: str = ""
    why: str = ""

    def describe(self) -> str:
        what = "a whole number" if self.kind is int else "a number"
        low, high = (f"{int(x)}" if self.kind is int else f"{x:g}" for x in (self.low, self.high))
        span = (
            f"{'>' if self.low_open else '>='} {low} and {'<' if self.high_open else '<='} {high}"
            if self.low_open or self.high_open
            else f"from {low} to {high}"
        )
        return f"{what} {span}" + (f" {self.unit}" if self.unit else "") + (f" ({self.why})" if self.why else "")

    def problem(self, value) -> str:
        """Why `value` is refused, or "" when it is valid."""
        if value is None and self.optional:
            return ""
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"is not a number ({type(value).__name__})"
        if self.kind is int and not isinstance(value, numbers.Integral):
            return "is not a whole number"
        if not isinstance(value, numbers.Integral) and not math.isfinite(value):
            return "is not a finite number"
        too_low = value <= self.low if self.low_open else value < self.low
        too_high = value >= self.high if self.high_open else value > self.high
        return "is out of range" if too_low or too_high else ""

    def check(self, name: str, value) -> None:
        """Raise InputError naming `name` (an option or field), the value and the valid range, if `value` is refused."""
        problem = self.problem(value)
        if problem:
            raise InputError(f"{name} {shown(value)} {problem}: give {self.describe()}")


def shown(value) -> str:
    """`value` for a message: a huge integer by its size (Python refuses to print one over 4300 digits), the rest
    as repr, cut to 60 characters."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"(a number of {int(value.bit_length() * 0.30103) + 1} digits)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


SEED = Bound(0, 2**32 - 1, why="numpy and TensorFlow seeds")


def check_bounds(config) -> None:
    """Check every field of `config` named in its class's BOUNDS; a message names field `image_size` "image size"."""
    for name, bound in type(config).BOUNDS.items():
        bound.check(name.replace("_", " "), getattr(config, name))
