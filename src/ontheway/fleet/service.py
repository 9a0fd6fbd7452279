"""The fleet of one process: store, ingest, tracking hub, offline monitor and history, built from
the settings once (the API's lifespan, a worker's main) and closed at the end."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from ontheway import tasks
from ontheway.connections import Connections
from ontheway.fleet.history import HistoryWriter
from ontheway.fleet.ingest import Ingestor
from ontheway.fleet.monitor import OfflineMonitor, UnavailableRecorder
from ontheway.fleet.store import FleetStore
from ontheway.fleet.tracking import ChannelHub
from ontheway.regions import Catalog, load_catalog
from ontheway.settings import Settings


def open_store(redis: aioredis.Redis, settings: Settings) -> FleetStore:
    """A fleet store configured from the settings (and the regions' areas from the catalog)."""
    return FleetStore(
        redis,
        heartbeat_ttl_s=settings.fleet_heartbeat_ttl_s,
        max_active_orders=settings.fleet_max_active_orders,
        lock_ttl_s=settings.fleet_lock_ttl_s,
        region_areas_m2=_region_areas(settings.region_catalog),
    )


@functools.lru_cache(maxsize=8)
def _region_areas(catalog_path: Path | None) -> dict[str, float]:
    """Each region's area, read once per process and catalog file (some callers open a store
    per event: they must not read and validate the catalog each time)."""
    return {r.region: r.bbox.area_m2 for r in load_catalog(catalog_path)}


@dataclass
class Fleet:
    """What the fleet's routes share: the store, the ingest and the pub/sub hub."""

    store: FleetStore
    ingestor: Ingestor
    hub: ChannelHub
    catalog: Catalog
    monitor: OfflineMonitor | None = None
    history: HistoryWriter | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def open(
        cls,
        redis: aioredis.Redis,
        catalog: Catalog,
        settings: Settings,
        recorder: UnavailableRecorder | None = None,
        conns: Connections | None = None,
    ) -> Fleet:
        """Build the fleet and start its background tasks: the monitor only with a recorder,
        the history writer only with the shards' connections (and history enabled)."""
        store = open_store(redis, settings)
        ingestor = Ingestor(store, catalog, settings)
        ingestor.start()
        fleet = cls(store, ingestor, ChannelHub(redis), catalog)
        if conns is not None and settings.fleet_history_enabled:
            fleet.history = HistoryWriter(conns, catalog, settings)
            ingestor.listeners.append(fleet.history.on_applied)
            fleet.history.start()
        if recorder is not None:
            regions = [r.region for r in catalog]
            fleet.monitor = OfflineMonitor(
                store, regions, recorder, settings.fleet_monitor_interval_s
            )
            fleet._tasks.append(asyncio.create_task(fleet.monitor.run(), name="fleet-monitor"))
        return fleet

    def start_task(self, name: str, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` in the background until the fleet closes (e.g. the offer sweeper)."""
        self._tasks.append(asyncio.create_task(work, name=name))

    async def aclose(self) -> None:
        """Flush queued fixes and stop the background tasks."""
        await tasks.stop(self._tasks)
        await self.ingestor.aclose()
        if self.history is not None:
            await self.history.aclose()
        await self.hub.aclose()
