"""Shared pieces of the benchmarks: latency percentiles and a timed closed loop."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    """What a closed-loop load run measured."""

    done: int
    failed: int
    seconds: float
    latencies_ms: list[float]

    @property
    def per_second(self) -> float:
        return self.done / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile of latency in ms (q in 0..100)."""
        if not self.latencies_ms:
            return float("nan")
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[
            max(0, min(98, round(q) - 1))
        ]


async def closed_loop(
    call: Callable[[int], Awaitable[object]], clients: int, seconds: float
) -> LoadResult:
    """Run ``clients`` callers back to back for ``seconds``; count and time each call."""
    latencies: list[float] = []
    failed = 0
    deadline = time.perf_counter() + seconds

    async def client(index: int) -> None:
        nonlocal failed
        n = 0
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                await call(index * 1_000_000 + n)
            except Exception:  # counted and reported: a benchmark must not hide failures
                failed += 1
            else:
                latencies.append((time.perf_counter() - start) * 1000)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return LoadResult(len(latencies), failed, time.perf_counter() - started, latencies)


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
