"""One read at a time per key, its answer shared by every caller for a while.

Facts that move slowly but are asked for at every request (a region's recent figures, the
drivers near a restaurant, the live dashboard's snapshot) are read once per ``max_age_s`` per
key and process; the callers meanwhile await the same read. A read that failed is not kept
(the next caller reads again), nor one made on another event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

PRUNE_AT = 4096
"""Kept reads beyond which the old ones are dropped (keys come and go: restaurants, regions)."""


class SharedReads(Generic[K, V]):
    """Reads keyed by ``K``, each shared for ``max_age_s`` seconds of the monotonic clock."""

    def __init__(self, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._held: dict[K, tuple[float, asyncio.Future[V]]] = {}

    async def get(self, key: K, read: Callable[[], Awaitable[V]]) -> V:
        """The answer of a read of ``key`` made less than ``max_age_s`` ago (or under way),
        else of ``read()``, made now and kept."""
        now = time.monotonic()
        held = self._held.get(key)
        if held is None or not self._usable(held, now):
            if len(self._held) >= PRUNE_AT:
                self._prune(now)
            held = (now, asyncio.ensure_future(read()))
            self._held[key] = held
        # Shielded: a caller cancelled while waiting does not cancel the others' read.
        return await asyncio.shield(held[1])

    def _usable(self, held: tuple[float, asyncio.Future[V]], now: float) -> bool:
        taken, future = held
        if now - taken >= self.max_age_s or future.get_loop() is not asyncio.get_running_loop():
            return False
        return not (future.done() and (future.cancelled() or future.exception() is not None))

    def _prune(self, now: float) -> None:
        self._held = {k: h for k, h in self._held.items() if now - h[0] < self.max_age_s}
