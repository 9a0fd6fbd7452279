"""The whole backend for a run: ``ontheway run`` (API, relay, monitor, every worker) in a
process of its own, with its timeouts scaled to the simulation's speed.

The server works in wall time; a simulated driver lives ``speed`` times faster, so every
duration the server waits for a driver is divided by the speed (with a floor where a shorter
wait would turn scheduling noise into events): the heartbeat TTL (60 s), the offer timeout
(20 s), the "no driver" flag (120 s), the batched dispatcher's window and travel times. The
per-driver fix rate limit (2/s) is multiplied by it. The run has an event stream of its own
(``sim_<run>``), started at the end of every shard's outbox, so that only this run's events
reach its dispatcher and workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from ontheway.connections import Connections
from ontheway.events.consumers import consumer_names
from ontheway.events.relay import cursor_name, start_at_end
from ontheway.smoke import api_process

HEARTBEAT_FLOOR_S = 2
OFFER_FLOOR_S = 1.5


def scaled_env(
    speed: float, stream: str, policy: str = "greedy", batch_window_s: float = 60.0
) -> dict[str, str]:
    """The backend's settings for a run at ``speed`` (environment variables), dispatching
    with ``policy`` (``batched``: a round every ``batch_window_s`` simulated seconds)."""
    return {
        "ONTHEWAY_DISPATCH_POLICY": policy,
        "ONTHEWAY_DISPATCH_BATCH_WINDOW_S": f"{batch_window_s / speed:.3f}",
        # Road travel times are real seconds, the simulated drivers drive ``speed`` times
        # faster: the batched policy compares them with kitchens on the wall clock.
        "ONTHEWAY_DISPATCH_BATCH_TIME_SCALE": f"{speed:g}",
        # The same for delivery estimates: legs in world seconds, promises on the wall clock.
        "ONTHEWAY_TIME_SCALE": f"{speed:g}",
        "ONTHEWAY_FLEET_HEARTBEAT_TTL_S": str(max(HEARTBEAT_FLOOR_S, math.ceil(60 / speed))),
        "ONTHEWAY_DISPATCH_OFFER_TIMEOUT_S": f"{max(OFFER_FLOOR_S, 20 / speed):.3f}",
        "ONTHEWAY_DISPATCH_FLAG_AFTER_S": f"{max(2.0, 120 / speed):.3f}",
        # A failed event comes back after this (30 s unscaled); an order that found no
        # driver is tried again every 30 s unscaled.
        "ONTHEWAY_BUS_CLAIM_IDLE_S": f"{max(1.0, 30 / speed):.3f}",
        "ONTHEWAY_DISPATCH_RETRY_INTERVAL_S": f"{max(0.5, 30 / speed):.3f}",
        "ONTHEWAY_DISPATCH_REFUSAL_MEMORY_S": str(max(2, math.ceil(300 / speed))),
        "ONTHEWAY_FLEET_RATE_PER_S": f"{max(2.0, 2 * speed):.3f}",
        "ONTHEWAY_FLEET_RATE_BURST": str(max(20, math.ceil(4 * speed))),
        "ONTHEWAY_EVENT_STREAM": stream,
        # Seven processes start at once on a small machine: give PostgreSQL time to answer.
        "ONTHEWAY_DEPENDENCY_TIMEOUT_S": "10",
    }


async def start_stream(conns: Connections, shards: list[str], stream: str) -> None:
    """Position the relay's cursor of ``stream`` at the end of every shard's outbox."""
    for shard in shards:
        await start_at_end(conns, shard, cursor_name(stream, shard))


async def wait_consumers(redis: Redis, stream: str, timeout_s: float = 90) -> None:
    """Wait until every consumer of the stream has joined it (the workers are up), so that
    the first orders are dispatched at once rather than when a late worker starts."""
    wanted = set(consumer_names())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ResponseError):  # the stream does not exist yet
            groups = await redis.xinfo_groups(f"events:{stream}")
            if wanted <= {_text(g["name"]) for g in groups}:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the backend's workers did not join {stream!r} within {timeout_s:.0f} s")


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@asynccontextmanager
async def backend(
    port: int, env: dict[str, str], log_path: Path
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``ontheway run --port`` with ``env``, output to ``log_path``; healthy when entered,
    stopped with SIGTERM (each part finishes its current work) on exit."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        async with api_process(port, env={**os.environ, **env}, command="run", log=log) as up:
            yield up
