"""Shared pieces of the benchmarks: latency percentiles and a timed closed loop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import statistics
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ontheway.runner import run

T = TypeVar("T")


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


async def each(calls: list[Callable[[], Awaitable[object]]], clients: int) -> LoadResult:
    """Run every one of ``calls`` once, ``clients`` at a time; count and time each."""
    latencies: list[float] = []
    failed = 0
    queue = iter(calls)

    async def client() -> None:
        nonlocal failed
        for call in queue:
            start = time.perf_counter()
            try:
                await call()
            except Exception:  # counted and reported, as in closed_loop
                failed += 1
            else:
                latencies.append((time.perf_counter() - start) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return LoadResult(len(latencies), failed, time.perf_counter() - started, latencies)


def _stat(pid: str) -> tuple[int, float] | None:
    """A process's parent and CPU seconds (user + system) so far; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(
    servers: dict[str, int] | None = None, groups: dict[str, list[int]] | None = None
) -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process, by each server of
    ``servers`` (label -> its main pid: that process and its children, as PostgreSQL's
    backends) and by each group of ``groups`` (label -> pids), from ``/proc`` (Linux; only
    this process elsewhere). A process that ends between two readings takes its seconds with
    it, so compare readings over a window where the processes stay up (pooled connections)."""
    servers, groups = servers or {}, groups or {}
    label_of = {pid: label for label, pid in servers.items()}
    label_of |= {pid: label for label, pids in groups.items() for pid in pids}
    found = dict.fromkeys([*servers, *groups], 0.0)
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        pids = []
    for pid in pids:
        stat = _stat(pid)
        if stat is None:
            continue  # ended meanwhile
        parent, seconds = stat
        label = label_of.get(int(pid))
        if label is None and parent in servers.values():
            label = label_of[parent]
        if label is not None:
            found[label] += seconds
    times = os.times()
    return {"this process": times.user + times.system, **found}


LOOPBACK = {None, "127.0.0.1", "::1", "localhost"}


async def server_pids(conn: Any, redis: Any) -> dict[str, int]:
    """The main pids of the PostgreSQL server behind ``conn`` (a dict-row connection: its
    backend's parent) and of the Redis server behind ``redis`` (its ``INFO``), for
    ``cpu_seconds``; a server reached other than on loopback is left out (another host)."""
    found: dict[str, int] = {}
    cur = await conn.execute("SELECT pg_backend_pid() AS pid, host(inet_server_addr()) AS addr")
    row = await cur.fetchone()
    stat = _stat(str(row["pid"]))
    if row["addr"] in LOOPBACK and stat is not None:
        found["postgres"] = stat[0]
    if (pid := await redis_pid(redis)) is not None:
        found["redis-server"] = pid
    return found


async def redis_pid(redis: Any) -> int | None:
    """The pid of the Redis server behind ``redis`` (its ``INFO``), None when it is reached
    other than on loopback (another host: its CPU cannot be read here)."""
    if redis.connection_pool.connection_kwargs.get("host") not in LOOPBACK:
        return None
    return int((await redis.info("server"))["process_id"])


def cpu_ms_per(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """Milliseconds of CPU per operation of each process (or server) between two readings of
    ``cpu_seconds``."""
    if not count:
        return {}
    return {name: (after[name] - before.get(name, 0.0)) * 1000 / count for name in after}


def free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def unlink_matching(redis: Any, pattern: str) -> None:
    """Delete every key matching ``pattern`` (SCAN, then UNLINK 10,000 at a time)."""
    found: list[bytes] = []
    async for key in redis.scan_iter(match=pattern, count=10_000):
        found.append(key)
        if len(found) >= 10_000:
            await redis.unlink(*found)
            found.clear()
    if found:
        await redis.unlink(*found)


def percentile(values: list[float], q: int) -> float:
    """The q-th percentile (q in 1..99) of ``values``; NaN when there are none."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


class Stopped(SystemExit):
    """A benchmark stopped by SIGTERM, after its clean-up (exit status 143, as for SIGTERM)."""

    def __init__(self) -> None:
        super().__init__(143)


def run_stoppable(main: Coroutine[Any, Any, T]) -> T:
    """``runner.run(main)``, where SIGTERM cancels ``main`` as Ctrl-C does, so that its
    ``finally`` clean-up (a benchmark's shard database, region, map, drivers, stream) runs
    before the process ends; by default SIGTERM ends Python without running it."""

    async def stoppable() -> T:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        stopped = False

        def stop() -> None:
            nonlocal stopped
            stopped = True
            task.cancel()

        loop.add_signal_handler(signal.SIGTERM, stop)
        try:
            return await main
        except asyncio.CancelledError:
            if stopped:
                raise Stopped() from None
            raise
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    return run(stoppable())
