"""Per-driver rate limiting: a token bucket per key, decided in memory. Pure: no I/O.

The limit protects the hot path from one app stuck in a loop; it is per API process (with
several processes a driver gets the allowance of each one it reaches, which is fine for that
purpose). Idle buckets are forgotten so memory follows the active drivers.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RateLimiter:
    """Allow ``rate_per_s`` events per key on average and ``burst`` at once."""

    rate_per_s: float
    burst: int
    # key -> (tokens left, time of the last refill)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _last_prune: float = 0.0

    def allow(self, key: str, now: float) -> bool:
        """Take one token from ``key``'s bucket; False when it is empty."""
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        if tokens < 1.0:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1.0, now)
        if now - self._last_prune > self.full_after_s:
            self._prune(now)
        return True

    @property
    def full_after_s(self) -> float:
        """How long an idle bucket takes to refill completely (then it can be forgotten)."""
        return self.burst / self.rate_per_s

    def _prune(self, now: float) -> None:
        horizon = now - self.full_after_s
        self._buckets = {k: v for k, v in self._buckets.items() if v[1] >= horizon}
        self._last_prune = now

    def __len__(self) -> int:
        return len(self._buckets)
