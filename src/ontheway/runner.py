"""Running our processes: the event loop (``run``); for long-lived ones (relay, workers)
connections, signals and a clean shutdown (``run_until_signalled``)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import uvloop

from ontheway import collector
from ontheway.connections import Connections
from ontheway.regions import load_catalog
from ontheway.settings import Settings

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on uvloop's event loop, as uvicorn runs the API: every command
    and benchmark process starts here. Its loop and transports are written in C (libuv): the
    relay and the dispatch workers spend a tenth less CPU per order on it (see Dispatch in
    the README)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def run_until_signalled(
    settings: Settings,
    main: Callable[[Connections, asyncio.Event], Awaitable[None]],
    shards: list[str] | None = None,
) -> None:
    """Open connections to ``shards`` (default: every shard of the catalog), run ``main``
    until SIGTERM or SIGINT sets the stop event, then let it finish its current step and close
    everything. The collector is set for serving meanwhile (collector.py)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if shards is None:
        shards = load_catalog(settings.region_catalog).shards()
    conns = await Connections.open(settings, shards=shards)
    try:
        with collector.serving():
            await main(conns, stop)
    finally:
        await conns.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
