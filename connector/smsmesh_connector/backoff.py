"""Capped exponential backoff with jitter, for reconnecting a bind."""

from __future__ import annotations

import random


class Backoff:
    def __init__(
        self, initial: float = 1.0, maximum: float = 60.0, multiplier: float = 2.0
    ) -> None:
        if initial <= 0 or maximum < initial or multiplier < 1:
            raise ValueError("need 0 < initial <= maximum and multiplier >= 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
        self.failures = 0

    def next_delay(self) -> float:
        """Delay before the next attempt: grows per failure, capped, jittered by +-20 %."""
        ceiling = min(self.maximum, self.initial * self.multiplier**self.failures)
        self.failures += 1
        return min(self.maximum, ceiling * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.failures = 0
