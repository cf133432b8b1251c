"""What every stage's configuration dataclass knows: how to serialise and hash itself.

Stores and runs record `digest()` (a store file is named by it), so its recipe must never change:
sha256 of the JSON of `dataclasses.asdict` with sorted keys, first 10 hex digits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict


class Config:
    """Mixin for the frozen configuration dataclasses (FeatureConfig, TrainConfig, ...)."""

    def to_dict(self) -> dict:
        return asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:10]
