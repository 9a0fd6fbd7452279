"""Location ingest: admit fixes at the edge, then write them to Redis in batches.

Every path in (``POST /api/driver/location``, the batch endpoint, ``WS /ws/driver``) calls
``admit`` (validation, who may report, region, clock, rate) and then ``submit``, which queues
the fix. A background task flushes the queue every ``fleet_flush_interval_s`` (or as soon as a
region has a full batch) with one Lua call per batch of a region, several batches in flight,
so thousands of drivers cost a few round trips. ``submit`` returns a future of the fix's
outcome (HTTP callers await it); ``submit_nowait`` only calls back on failure (the WebSocket),
which keeps the hot path free of per-fix futures. When more fixes wait than
``MAX_BACKLOG``, sockets stop reading (``room``) until the backlog halves: TCP then slows the
senders instead of the process filling its memory and starving its own flushes.

A fix for a driver registered in another region moves the driver (its keys follow it) and is
then applied; a fix for a driver registered nowhere fails with ``UnknownDriver``.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ontheway import tasks
from ontheway.auth import Principal, Role
from ontheway.errors import OnTheWayError, RateLimited
from ontheway.fleet.locate import RegionLocator
from ontheway.fleet.model import (
    Fix,
    LocationIn,
    Outcome,
    UnknownDriver,
    check_reporter,
    check_timestamp,
    parse_location,
)
from ontheway.fleet.ratelimit import RateLimiter
from ontheway.fleet.store import FleetStore
from ontheway.regions import Catalog
from ontheway.settings import Settings

AppliedListener = Callable[[Sequence[Fix]], None]
OnError = Callable[[OnTheWayError, Fix], None]  # called with the fix that failed
Sink = asyncio.Future[Outcome] | OnError
MAX_BACKLOG = 20_000  # fixes admitted but not yet written


@dataclass
class IngestStats:
    """Counters since start-up, for operators and the benchmark."""

    submitted: int = 0
    applied: int = 0
    stale: int = 0
    moved: int = 0
    unknown: int = 0
    failed: int = 0
    flushes: int = 0
    rate_limited: int = 0
    backlog: int = 0


class Ingestor:
    """Admits location fixes and writes them to Redis in batches."""

    def __init__(self, store: FleetStore, catalog: Catalog, settings: Settings) -> None:
        self.store = store
        self.locator = RegionLocator(catalog)
        self.max_skew_s = settings.fleet_max_clock_skew_s
        self.max_age_s = settings.fleet_max_position_age_s
        self.interval_s = settings.fleet_flush_interval_s
        self.batch_size = settings.fleet_batch_size
        self.limiter = RateLimiter(settings.fleet_rate_per_s, settings.fleet_rate_burst)
        self.stats = IngestStats()
        self.listeners: list[AppliedListener] = []
        self._pending: dict[str, list[tuple[Fix, Sink | None]]] = defaultdict(list)
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        # Calls in flight keep Redis busy while Python builds the next batch; every one of
        # them is ahead of any other client's command (a search) arriving meanwhile.
        self._slots = asyncio.Semaphore(settings.fleet_calls_in_flight)
        self._flushes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    def admit(self, raw: object, caller: Principal, now: float | None = None) -> Fix:
        """Validate one fix from ``caller`` and place it in its region; raises our errors."""
        location = raw if isinstance(raw, LocationIn) else parse_location(raw)
        check_reporter(caller.role, caller.sub, location.driver_id)
        region = self.locator.region_for(location.lat, location.lng)
        if caller.role is Role.OPS:
            caller.require_region(region)
        now = time.time() if now is None else now
        check_timestamp(location.timestamp, now, self.max_skew_s, self.max_age_s)
        if not self.limiter.allow(location.driver_id, now):
            self.stats.rate_limited += 1
            raise RateLimited(
                f"driver {location.driver_id!r} sends locations faster than "
                f"{self.limiter.rate_per_s:g}/s (bursts of {self.limiter.burst})",
                field="driver_id",
            )
        return Fix(location.driver_id, region, location.lat, location.lng, location.timestamp)

    def submit(self, fix: Fix) -> asyncio.Future[Outcome]:
        """Queue an admitted fix; the future resolves once it is in Redis (or failed)."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue(fix, future)
        return future

    def submit_nowait(self, fix: Fix, on_error: OnError | None = None) -> None:
        """Queue an admitted fix; ``on_error`` is called only if it cannot be stored."""
        self._queue(fix, on_error)

    def _queue(self, fix: Fix, sink: Sink | None) -> None:
        queue = self._pending[fix.region]
        queue.append((fix, sink))
        self.stats.submitted += 1
        self.stats.backlog += 1
        if self.stats.backlog > MAX_BACKLOG:
            self._drained.clear()
        if len(queue) >= self.batch_size or len(queue) == 1:
            self._wake.set()

    @property
    def congested(self) -> bool:
        """Whether readers should wait for ``room`` before admitting more."""
        return not self._drained.is_set()

    async def room(self) -> None:
        """Wait until the backlog is down to half its limit."""
        await self._drained.wait()

    def _settled(self, count: int) -> None:
        self.stats.backlog -= count
        if self.stats.backlog <= MAX_BACKLOG // 2:
            self._drained.set()

    # -- the flush loop ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the background flush task (the API's lifespan calls this)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="fleet-ingest")

    async def aclose(self) -> None:
        """Flush what is queued, then stop."""
        if self._task is not None:
            await tasks.stop([self._task])
            self._task = None
        await self.flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not any(len(q) >= self.batch_size for q in self._pending.values()):
                # Let a window's worth of fixes gather: one call carries them all.
                await asyncio.sleep(self.interval_s)
            self._wake.clear()
            for region, queue in self._take().items():
                for start in range(0, len(queue), self.batch_size):
                    task = asyncio.create_task(
                        self._flush_batch(region, queue[start : start + self.batch_size])
                    )
                    self._flushes.add(task)
                    task.add_done_callback(self._flushes.discard)

    def _take(self) -> dict[str, list[tuple[Fix, Sink | None]]]:
        taken, self._pending = self._pending, defaultdict(list)
        return taken

    async def flush(self) -> None:
        """Write everything queued now and wait for it (tests, shutdown)."""
        await asyncio.gather(
            *(
                self._flush_batch(region, queue[start : start + self.batch_size])
                for region, queue in self._take().items()
                for start in range(0, len(queue), self.batch_size)
            )
        )

    async def _flush_batch(self, region: str, batch: list[tuple[Fix, Sink | None]]) -> None:
        try:
            async with self._slots:
                outcomes = await self.store.apply_fixes(region, [fix for fix, _ in batch])
        except OnTheWayError as exc:
            self.stats.failed += len(batch)
            self._settled(len(batch))
            for fix, sink in batch:
                _fail(sink, exc, fix)
            return
        self.stats.flushes += 1
        applied: list[Fix] = []
        settled = 0
        for (fix, sink), outcome in zip(batch, outcomes, strict=True):
            if outcome is Outcome.NOT_HERE:
                # Rare: the driver crossed into this region, or is unknown. Off the batch.
                task = asyncio.create_task(self._relocate(fix, sink))
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)
                continue
            settled += 1
            if outcome is Outcome.APPLIED:
                applied.append(fix)
            else:
                self.stats.stale += 1
            if isinstance(sink, asyncio.Future) and not sink.done():
                sink.set_result(outcome)
        self._settled(settled)
        self._applied(applied)

    async def _relocate(self, fix: Fix, sink: Sink | None) -> None:
        try:
            home = await self.store.home(fix.driver_id)
            if home is None:
                self.stats.unknown += 1
                raise UnknownDriver(f"no driver {fix.driver_id!r} is registered", field="driver_id")
            await self.store.move_driver(fix.driver_id, fix.region)
            self.stats.moved += 1
            (outcome,) = await self.store.apply_fixes(fix.region, [fix])
        except OnTheWayError as exc:
            _fail(sink, exc, fix)
            return
        finally:
            self._settled(1)
        if outcome is Outcome.APPLIED:
            self._applied([fix])
        if isinstance(sink, asyncio.Future) and not sink.done():
            sink.set_result(outcome)

    def _applied(self, fixes: list[Fix]) -> None:
        self.stats.applied += len(fixes)
        if not fixes:
            return
        for listener in self.listeners:
            listener(fixes)  # listeners only buffer (history, slow path): they do not fail


def _fail(sink: Sink | None, exc: OnTheWayError, fix: Fix) -> None:
    if isinstance(sink, asyncio.Future):
        if not sink.done():
            sink.set_exception(exc)
    elif sink is not None:
        sink(exc, fix)
