"""Running long-lived processes (relay, workers): connections, signals, clean shutdown."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable

from ontheway import collector
from ontheway.connections import Connections
from ontheway.regions import load_catalog
from ontheway.settings import Settings


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
