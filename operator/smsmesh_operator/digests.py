"""Short, stable digests: how the operator tells "what I would write" from "what is there"."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

LENGTH = 20


def digest(*parts: str) -> str:
    """A digest of text parts (NUL-separated, so parts cannot run together)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:LENGTH]


def json_digest(value: Mapping[str, Any]) -> str:
    """A digest of a JSON-able mapping, independent of key order."""
    return digest(json.dumps(value, sort_keys=True, separators=(",", ":")))
