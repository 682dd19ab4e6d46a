"""Per-token rate limits: one token bucket per key, refilled at ``rate`` per second up to ``burst``."""
from __future__ import annotations

import threading
import time
from typing import Callable


class TokenBucket:
    """``burst`` requests at once, then ``rate`` per second; the clock is injected for tests."""

    def __init__(self, rate: float, burst: int, now: float):
        if not rate > 0 or not burst >= 1:
            raise ValueError(f"rate limit needs rate > 0 and burst >= 1, got rate={rate!r}, burst={burst!r}")
        self.rate, self.burst = float(rate), float(burst)
        self.level, self.stamp = float(burst), now

    def take(self, now: float) -> float:
        """0.0 when a request may go now (one unit taken), else the seconds until one may."""
        self.level = min(self.burst, self.level + max(0.0, now - self.stamp) * self.rate)
        self.stamp = max(self.stamp, now)
        if self.level >= 1.0:
            self.level -= 1.0
            return 0.0
        return (1.0 - self.level) / self.rate


class RateLimiter:
    """A :class:`TokenBucket` per key (a token's name), created on first use; thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        TokenBucket(rate, burst, 0.0)  # check the settings now
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def check(self, key: str) -> float:
        """0.0: allowed; else the seconds to wait (the request is refused and costs nothing)."""
        with self._lock:
            now = self.clock()
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            return bucket.take(now)
