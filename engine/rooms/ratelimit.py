"""A token bucket: the rate limit the room server applies to connections and messages, and the engine to each
participant's negotiations."""

from __future__ import annotations

import time


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` is False when empty."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = float(burst), time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
