"""The simulator's decisions, as small pure pieces: message ids, outcomes, throttling,
injected errors. No I/O and no clock of their own, so each is tested exactly.
"""

from __future__ import annotations

import random
import time
import zlib

from smsmesh.model import ReceiptState

__all__ = [
    "NETWORK_ERRORS",
    "ErrorInjector",
    "MessageIds",
    "TokenBucket",
    "choose_outcome",
]

_OUTCOME_STATES = {
    "delivered": ReceiptState.DELIVERED,
    "undeliverable": ReceiptState.UNDELIVERABLE,
    "expired": ReceiptState.EXPIRED,
    "rejected": ReceiptState.REJECTED,
}

# "mixed": out of every 100 ids (by hash), this many end in each state. Mostly delivered,
# so dashboards look like a healthy carrier with a realistic tail of failures.
_MIXED = (
    (80, ReceiptState.DELIVERED),
    (90, ReceiptState.UNDELIVERABLE),
    (97, ReceiptState.EXPIRED),
    (100, ReceiptState.REJECTED),
)

# GSM MAP error codes a carrier would report for each failure (network type 3 = GSM),
# in the receipt's `err:` field and its network_error_code TLV.
NETWORK_ERRORS: dict[ReceiptState, int] = {
    ReceiptState.UNDELIVERABLE: 1,  # unknown subscriber
    ReceiptState.EXPIRED: 27,  # absent subscriber
    ReceiptState.REJECTED: 11,  # teleservice not provisioned
}


def choose_outcome(outcome: str, message_id: str) -> ReceiptState:
    """The final state of a message under the configured outcome.

    "mixed" decides by a hash of the message id, so the same id always gets the same
    state (a test can predict it, a rerun reproduces it).
    """
    state = _OUTCOME_STATES.get(outcome)
    if state is not None:
        return state
    if outcome != "mixed":
        raise ValueError(f"unknown receipt outcome {outcome!r}")
    bucket = zlib.crc32(message_id.encode("latin-1", "replace")) % 100
    return next(s for limit, s in _MIXED if bucket < limit)


class MessageIds:
    """Hands out message ids: one number per message, written per `style`.

    Returns (the id for submit_sm_resp, the id the receipt quotes). Both name the same
    number; "hex-receipt" writes it in decimal for the response and in hex for the
    receipt, the mismatch real carriers produce. By default numbering starts from the
    clock so that ids never repeat across restarts (a store that outlives the simulator
    would otherwise match a new receipt to an old message).
    """

    def __init__(self, style: str = "decimal", first: int | None = None) -> None:
        self.style = style
        self._next = int(time.time() * 1000) * 100 if first is None else first

    def next(self) -> tuple[str, str]:
        number = self._next
        self._next = number + 1
        style = self.style
        if style == "decimal":
            text = str(number)
            return text, text
        hex_text = format(number, "x")
        if style == "hex":
            return hex_text, hex_text
        return str(number), hex_text


class TokenBucket:
    """At most `rate` takes per second on average, bursts up to `burst` (default: one
    second's worth). The caller passes the time, so the bucket is deterministic."""

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, rate if burst is None else burst)
        self._tokens = self.burst
        self._at = now

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        elapsed = now - self._at
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class ErrorInjector:
    """Decides which submits fail: a `rate` share, from a seedable generator, so a run
    with a seed fails the same submits every time."""

    def __init__(self, rate: float, seed: int | None = None) -> None:
        self.rate = rate
        self._random = random.Random(seed)

    def fails(self) -> bool:
        if self.rate <= 0:
            return False
        return self._random.random() < self.rate
