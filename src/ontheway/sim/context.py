"""What every agent of a run shares: the clock, the HTTP client, tokens, the kitchen's
"food is ready" signals, the run's record, and its restaurants by location (the simulator's
own: a driver knows a restaurant's parking, which the platform never learns)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from ontheway.auth import Role, issue_token
from ontheway.sim.clock import SimClock
from ontheway.sim.plan import RestaurantPlan
from ontheway.sim.record import RunRecord

log = logging.getLogger(__name__)
RETRIES = 4
# Requests in flight at once (the HTTP pool's size): past it callers wait on a semaphore, not in
# httpcore's pool, whose bookkeeping grows with queued requests times connections (a run of
# 2,000 drivers refreshing at once spent its event loop there: see the README's scale run).
IN_FLIGHT = 64


@dataclass
class SimContext:
    """One run's shared state (one per process; agents hold a reference)."""

    base_url: str
    jwt_key: str
    clock: SimClock
    record: RunRecord
    http: httpx.AsyncClient
    token_ttl_s: int
    seed: int
    fix_interval_s: float  # wall seconds between a driver's position reports
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: dict[str, asyncio.Event] = field(default_factory=dict)
    restaurants: dict[tuple[float, float], RestaurantPlan] = field(default_factory=dict)
    _tokens: dict[tuple[Role, str], str] = field(default_factory=dict)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    _gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(IN_FLIGHT))

    @property
    def ws_url(self) -> str:
        """The driver socket's URL."""
        return self.base_url.replace("http", "ws", 1) + "/ws/driver"

    def token(self, role: Role, sub: str, regions: list[str] | None = None) -> str:
        """A bearer token for ``sub`` (cached for the run)."""
        key = (role, sub)
        if key not in self._tokens:
            self._tokens[key] = issue_token(
                self.jwt_key, role, sub, regions=regions, ttl_s=self.token_ttl_s
            )
        return self._tokens[key]

    def spawn(self, work: Any) -> asyncio.Task[Any]:
        """Run ``work`` in the background, kept until it ends (cancelled at the run's end)."""
        task: asyncio.Task[Any] = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.warning("a simulated agent failed: %r", exc)
            self.note(f"agent failure: {exc!r}")

    async def cancel_all(self) -> None:
        """Cancel every background task and wait for them."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def note(self, text: str) -> None:
        """Keep a remark for the report (the first 200 of a run)."""
        if len(self.record.notes) < 200:
            self.record.notes.append(text[:300])

    def add_restaurants(self, plans: list[RestaurantPlan]) -> None:
        """Know these restaurants by their location (see ``restaurant_at``)."""
        self.restaurants.update({_place_key(p.lat, p.lng): p for p in plans})

    def restaurant_at(self, lat: float, lng: float) -> RestaurantPlan | None:
        """The run's restaurant at this location (as an order gives it), None if none."""
        return self.restaurants.get(_place_key(lat, lng))

    def ready_event(self, order_id: str) -> asyncio.Event:
        """Set by the restaurant when the order's food is ready."""
        return self.ready.setdefault(order_id, asyncio.Event())

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        json: Any = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """One API request, retried on transport errors and 5xx (same body, same key)."""
        sent = {"Authorization": f"Bearer {token}", **(headers or {})}
        last: Exception | None = None
        for attempt in range(RETRIES):
            try:
                async with self._gate:
                    resp = await self.http.request(method, path, json=json, params=params,
                                                   headers=sent)  # fmt: skip
            except httpx.TransportError as exc:
                last = exc
            else:
                if resp.status_code < 500 or attempt == RETRIES - 1:
                    return resp
                last = RuntimeError(f"{resp.status_code} {resp.text[:200]}")
            await asyncio.sleep(0.2 * 2**attempt)
        raise RuntimeError(f"{method} {path} failed: {last!r}")


def _place_key(lat: float, lng: float) -> tuple[float, float]:
    # To about 0.1 m: a location read back from PostGIS may differ in its last bits.
    return round(lat, 6), round(lng, 6)
