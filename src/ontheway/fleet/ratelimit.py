"""Per-driver rate limiting: a token bucket per key, decided in memory. Pure: no I/O.

The limit protects the hot path from one app stuck in a loop; it is per API process (with
several processes a driver gets the allowance of each one it reaches, which is fine for that
purpose). Idle buckets are forgotten so memory follows the active drivers: buckets live in two
generations that turn over once per refill time (a bucket idle that long is full, as good as
absent). A bucket used again moves to the current generation; turning over drops the previous
one whole. Nothing walks all the buckets at once, as the pruning this replaced did (a pass over
every driver's bucket, holding up the API's event loop once per refill time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Bucket = tuple[float, float]  # tokens left, time of the last refill


@dataclass
class RateLimiter:
    """Allow ``rate_per_s`` events per key on average and ``burst`` at once."""

    rate_per_s: float
    burst: int
    _current: dict[str, Bucket] = field(default_factory=dict)
    _previous: dict[str, Bucket] = field(default_factory=dict)
    _turned: float = float("-inf")

    def allow(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket; False when it is empty."""
        since = now - self._turned
        if since > self.full_after_s:
            # Buckets of the previous generation are full by now: forgotten. Those of the
            # current one too if it has not been used for a whole refill time either.
            self._previous = self._current if since <= 2 * self.full_after_s else {}
            self._current = {}
            self._turned = now
        bucket = self._current.get(key)
        if bucket is None:
            bucket = self._previous.pop(key, None) or (float(self.burst), now)
        tokens = min(float(self.burst), bucket[0] + (now - bucket[1]) * self.rate_per_s)
        if tokens < 1.0:
            self._current[key] = (tokens, now)
            return False
        self._current[key] = (tokens - 1.0, now)
        return True

    @property
    def full_after_s(self) -> float:
        """How long an idle bucket takes to refill completely (then it can be forgotten)."""
        return self.burst / self.rate_per_s

    def __len__(self) -> int:
        return len(self._current) + len(self._previous)
