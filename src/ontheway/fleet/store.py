"""The fleet's Redis adapter: drivers' live state, one region's keys per call (see keys.py).

Every method is one round trip (a Lua script or one command) except registering and moving a
driver between regions, which touch two slots. Redis errors become ``DependencyUnavailable``
through ``ontheway.connections.dependency_errors``.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from ontheway.connections import dependency_errors
from ontheway.errors import Conflict
from ontheway.fleet import keys, scripts
from ontheway.fleet.model import (
    Candidate,
    DriverStatus,
    Fix,
    Outcome,
    UnknownDriver,
    VehicleType,
)
from ontheway.fleet.search import first_count, plan_rings


@dataclass(frozen=True)
class DriverHome:
    """Where a driver is registered now, and how it delivers."""

    driver_id: str
    region: str
    vehicle_type: VehicleType


@dataclass(frozen=True)
class AssignmentLock:
    """A held assignment lock: only the holder of ``token`` may release it."""

    key: str
    token: str


@dataclass(frozen=True)
class ExpiredDriver:
    """A driver whose heartbeat expired while it held orders."""

    region: str
    driver_id: str
    order_ids: tuple[str, ...]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


ADDED = 0
"""ADD_ORDER's reply when it added the order (1: the driver held it already)."""
LOCK_HELD = 5
"""LOCK_AND_ADD_ORDER's reply when someone else holds the order's assignment lock."""


def _added(region: str, driver_id: str, code: int, count: int) -> int:
    """The driver's active order count after ADD_ORDER, or the error its code means."""
    if code == 3:
        raise UnknownDriver(f"no driver {driver_id!r} in region {region!r}", field="driver_id")
    if code == 2:
        raise Conflict(f"driver {driver_id!r} is at capacity ({count} active orders)")
    if code == 4:
        raise Conflict(f"driver {driver_id!r} is offline", code="driver_offline")
    return int(count)


def _optional_float(value: Any) -> float | None:
    text = _text(value)
    return float(text) if text else None


class FleetStore:
    """Drivers' live state in Redis: positions, heartbeats, capacity, locks, search."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        heartbeat_ttl_s: int,
        max_active_orders: Mapping[str, int],
        lock_ttl_s: int = 30,
        region_areas_m2: Mapping[str, float] | None = None,
    ) -> None:
        self.redis = redis
        self._areas = dict(region_areas_m2 or {})  # for the search's first ring (search.py)
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.lock_ttl_s = lock_ttl_s
        self._caps = [str(x) for pair in sorted(max_active_orders.items()) for x in pair]
        self._caps_spec = ",".join(f"{vt}={n}" for vt, n in sorted(max_active_orders.items()))
        self._ingest = redis.register_script(scripts.INGEST)
        self._find = redis.register_script(scripts.FIND_AVAILABLE)
        self._add_order = redis.register_script(scripts.ADD_ORDER)
        self._lock_and_add = redis.register_script(scripts.LOCK_AND_ADD_ORDER)
        self._remove_order = redis.register_script(scripts.REMOVE_ORDER)
        self._set_status = redis.register_script(scripts.SET_STATUS)
        self._release = redis.register_script(scripts.RELEASE_LOCK)
        self._sweep = redis.register_script(scripts.SWEEP_EXPIRED)
        self._forget_idle = redis.register_script(scripts.FORGET_IDLE)

    # -- registry ---------------------------------------------------------------------------

    async def register_driver(
        self,
        driver_id: str,
        region: str,
        vehicle_type: VehicleType,
        *,
        rating: float | None = None,
        acceptance_rate: float | None = None,
    ) -> None:
        """Make a driver known in ``region`` (idempotent; moves it if it was elsewhere)."""
        current = await self.home(driver_id)
        if current is not None and current.region != region:
            await self._leave_region(current.region, driver_id)
        fields: dict[Any, Any] = {"vehicle_type": vehicle_type.value}
        if rating is not None:
            fields["rating"] = repr(float(rating))
        if acceptance_rate is not None:
            fields["acceptance_rate"] = repr(float(acceptance_rate))
        with dependency_errors("Redis"):
            await self.redis.hset(keys.profile(region, driver_id), mapping=fields)
            await self.redis.hset(keys.home(driver_id), mapping={"region": region, **fields})

    async def register_many(
        self, drivers: Sequence[tuple[str, str, VehicleType]], *, chunk: int = 5000
    ) -> None:
        """Register new drivers ``(driver_id, region, vehicle_type)`` in bulk (seeding)."""
        with dependency_errors("Redis"):
            for start in range(0, len(drivers), chunk):
                pipe = self.redis.pipeline(transaction=False)
                for driver_id, region, vehicle in drivers[start : start + chunk]:
                    pipe.hset(keys.profile(region, driver_id), "vehicle_type", vehicle.value)
                    pipe.hset(
                        keys.home(driver_id),
                        mapping={"region": region, "vehicle_type": vehicle.value},
                    )
                await pipe.execute()

    async def home(self, driver_id: str) -> DriverHome | None:
        """The driver's region and vehicle, or None when it was never registered."""
        with dependency_errors("Redis"):
            raw = await self.redis.hmget(keys.home(driver_id), ["region", "vehicle_type"])
        if raw[0] is None or raw[1] is None:
            return None
        return DriverHome(driver_id, _text(raw[0]), VehicleType(_text(raw[1])))

    async def require_home(self, driver_id: str) -> DriverHome:
        """The driver's home; ``UnknownDriver`` when it was never registered."""
        found = await self.home(driver_id)
        if found is None:
            raise UnknownDriver(f"no driver {driver_id!r} is registered", field="driver_id")
        return found

    async def move_driver(self, driver_id: str, region: str) -> DriverHome:
        """Move a registered driver's live state to ``region`` (it crossed a boundary)."""
        current = await self.require_home(driver_id)
        if current.region == region:
            with dependency_errors("Redis"):
                # Registered here but the profile is gone (a move cut short): restore it.
                await self.redis.hset(
                    keys.profile(region, driver_id), "vehicle_type", current.vehicle_type.value
                )
            return current
        old = current.region
        with dependency_errors("Redis"):
            read = self.redis.pipeline(transaction=False)
            read.hgetall(keys.profile(old, driver_id))
            read.smembers(keys.active_orders(old, driver_id))
            read.hget(keys.last_fix(old), driver_id)
            profile, orders, last = await read.execute()
            # Copy, then switch the home, then delete: a crash in between leaves the driver
            # registered in its new region and at worst stale keys in the old one.
            write = self.redis.pipeline(transaction=True)
            fields: dict[Any, Any] = {_text(k): _text(v) for k, v in profile.items()}
            fields.setdefault("vehicle_type", current.vehicle_type.value)
            write.hset(keys.profile(region, driver_id), mapping=fields)
            if orders:
                write.sadd(keys.active_orders(region, driver_id), *orders)
                write.sadd(keys.carrying(region), driver_id)
            if last is not None:
                write.hset(keys.last_fix(region), driver_id, last)
            await write.execute()
            await self.redis.hset(keys.home(driver_id), "region", region)
        await self._leave_region(old, driver_id)
        return DriverHome(driver_id, region, current.vehicle_type)

    async def _leave_region(self, region: str, driver_id: str) -> None:
        with dependency_errors("Redis"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(
                keys.profile(region, driver_id),
                keys.status(region, driver_id),
                keys.active_orders(region, driver_id),
            )
            pipe.zrem(keys.locations(region), driver_id)
            pipe.zrem(keys.heartbeats(region), driver_id)
            pipe.hdel(keys.last_fix(region), driver_id)
            pipe.srem(keys.carrying(region), driver_id)
            await pipe.execute()

    # -- ingest -----------------------------------------------------------------------------

    async def apply_fixes(self, region: str, fixes: Sequence[Fix]) -> list[Outcome]:
        """Store fixes of one region in one round trip; one outcome per fix, in order."""
        args: list[str | int | float] = [keys.driver_prefix(region), self.heartbeat_ttl_s]
        for fix in fixes:
            args += (fix.driver_id, fix.lng, fix.lat, fix.timestamp)
        names = [
            keys.locations(region),
            keys.heartbeats(region),
            keys.fixes_applied(region),
            keys.last_fix(region),
            keys.carrying(region),
        ]
        with dependency_errors("Redis"):
            codes = await self._call(self._ingest, names, args)
        return [Outcome(int(c)) for c in codes]

    async def _call(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> Any:
        """``script(keys=keys, args=args)`` on ``_send_packed``'s path: the scripts of every
        order's dispatch take it (in a loop of calls on the 2-core development machine,
        redis-py's ``Script`` call cost 122-125 µs of client CPU, this way 88-96:
        ``scripts/bench-client-calls.py``)."""
        command = ("EVALSHA", script.sha, len(keys), *keys, *args)
        packed = hiredis.pack_command(command)  # type: ignore[arg-type]  # stub: 1-tuple
        return await self._send_packed(packed, script.script)

    async def _send_packed(self, packed: bytes, script: str | bytes | memoryview) -> Any:
        """Send one command packed by hiredis (in C, every argument in one pass) on a pooled
        connection and read its reply, loading ``script`` once if Redis lost it. The ingest
        call takes this path: redis-py encodes each of its ~1,000 arguments in Python, which
        cost the API about a fifth of its time per fix (see Fleet in README)."""
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            for attempt in (1, 2):
                await conn.send_packed_command(packed)
                try:
                    return await conn.read_response()  # on any error it disconnects first
                except NoScriptError:
                    if attempt == 2:
                        raise
                    await self.redis.script_load(script)
        finally:
            await pool.release(conn)

    async def fixes_applied(self, region: str) -> int:
        """How many fixes the region has stored since its counter began."""
        with dependency_errors("Redis"):
            value = await self.redis.get(keys.fixes_applied(region))
        return int(value or 0)

    # -- status and capacity ----------------------------------------------------------------

    async def set_status(self, region: str, driver_id: str, wanted: DriverStatus) -> DriverStatus:
        """Set a driver available or offline (busy follows capacity); returns the status."""
        with dependency_errors("Redis"):
            code, status = await self._set_status(
                keys=[keys.heartbeats(region)],
                args=[
                    keys.driver_prefix(region),
                    driver_id,
                    wanted.value,
                    self.heartbeat_ttl_s,
                    *self._caps,
                ],
            )
        if code == 3:
            raise UnknownDriver(f"no driver {driver_id!r} in region {region!r}", field="driver_id")
        if code == 5:
            raise Conflict(
                f"driver {driver_id!r} holds active orders and cannot go offline", field="status"
            )
        return DriverStatus(_text(status))

    async def status(self, region: str, driver_id: str) -> DriverStatus:
        """The driver's status now: offline once its heartbeat has expired."""
        with dependency_errors("Redis"):
            value = await self.redis.get(keys.status(region, driver_id))
        return DriverStatus(_text(value)) if value is not None else DriverStatus.OFFLINE

    async def add_order(self, region: str, driver_id: str, order_id: str) -> int:
        """Give an order to a driver within its capacity; returns its active order count."""
        with dependency_errors("Redis"):
            code, count = await self._call(
                self._add_order,
                keys=[keys.carrying(region)],
                args=[keys.driver_prefix(region), driver_id, order_id, *self._caps],
            )
        return _added(region, driver_id, code, count)

    async def lock_and_add_order(
        self, region: str, driver_id: str, order_id: str
    ) -> tuple[AssignmentLock, bool] | None:
        """Take the order's assignment lock for ``lock_ttl_s`` and give the order to the
        driver within its capacity, in one round trip; returns the lock and whether the order
        was added (False: the driver held it already). None when someone else holds the lock
        (nothing changed); a refused driver raises as ``add_order`` does, the lock let go."""
        lock = AssignmentLock(keys.assignment_lock(region, order_id), uuid.uuid4().hex)
        with dependency_errors("Redis"):
            code, count = await self._call(
                self._lock_and_add,
                keys=[keys.carrying(region), lock.key],
                args=[
                    lock.token,
                    self.lock_ttl_s,
                    keys.driver_prefix(region),
                    driver_id,
                    order_id,
                    *self._caps,
                ],
            )
        if code == LOCK_HELD:
            return None
        _added(region, driver_id, code, count)
        return lock, code == ADDED

    async def remove_order(self, region: str, driver_id: str, order_id: str) -> int:
        """Take an order off a driver (delivered, cancelled, reassigned); idempotent."""
        with dependency_errors("Redis"):
            code, count = await self._call(
                self._remove_order,
                keys=[keys.carrying(region)],
                args=[keys.driver_prefix(region), driver_id, order_id, *self._caps],
            )
        if code == 3:
            raise UnknownDriver(f"no driver {driver_id!r} in region {region!r}", field="driver_id")
        return int(count)

    async def carrying(self, region: str) -> set[str]:
        """The drivers of ``region`` that hold orders, from the region's index."""
        with dependency_errors("Redis"):
            members = await self.redis.smembers(keys.carrying(region))
        return {_text(m) for m in members}

    async def index_carrying(self, region: str, drivers: Sequence[str]) -> None:
        """Add drivers found holding orders to the region's index (sets made before it)."""
        if drivers:
            with dependency_errors("Redis"):
                await self.redis.sadd(keys.carrying(region), *drivers)

    async def forget_idle(self, region: str, driver_id: str) -> bool:
        """Take a driver holding no order out of the region's index; True if it was taken."""
        with dependency_errors("Redis"):
            taken = await self._forget_idle(
                keys=[keys.carrying(region), keys.active_orders(region, driver_id)],
                args=[driver_id],
            )
        return bool(taken)

    async def active_orders(self, region: str, driver_id: str) -> set[str]:
        """The ids of the orders a driver holds."""
        with dependency_errors("Redis"):
            members = await self.redis.smembers(keys.active_orders(region, driver_id))
        return {_text(m) for m in members}

    # -- assignment locks -------------------------------------------------------------------

    async def acquire_lock(self, region: str, order_id: str) -> AssignmentLock | None:
        """Take an order's assignment lock for ``lock_ttl_s``; None when someone holds it."""
        lock = AssignmentLock(keys.assignment_lock(region, order_id), uuid.uuid4().hex)
        with dependency_errors("Redis"):
            taken = await self.redis.set(lock.key, lock.token, nx=True, ex=self.lock_ttl_s)
        return lock if taken else None

    async def release_lock(
        self, lock: AssignmentLock, publish: Sequence[tuple[str, str]] = ()
    ) -> bool:
        """Release a lock if we still own it (compare-and-delete); False if it had expired.
        ``publish``: (channel, message) pairs published in the same round trip."""
        with dependency_errors("Redis"):
            deleted = await self._call(
                self._release,
                keys=[lock.key],
                args=[lock.token, *(part for pair in publish for part in pair)],
            )
        return bool(deleted)

    # -- search -----------------------------------------------------------------------------

    async def find_available(
        self,
        region: str,
        lat: float,
        lng: float,
        radius_m: float,
        limit: int,
        vehicle_types: Sequence[VehicleType] | None = None,
    ) -> list[Candidate]:
        """Available drivers with spare capacity within ``radius_m``, nearest first, in one
        round trip (a Lua script widening rings; see search.py)."""
        types = "," + ",".join(v.value for v in vehicle_types) + "," if vehicle_types else ""
        with dependency_errors("Redis"):
            rows = await self._call(
                self._find,
                keys=[keys.locations(region)],
                args=[
                    keys.driver_prefix(region),
                    lng,
                    lat,
                    limit,
                    first_count(limit),
                    types,
                    self._caps_spec,
                    self._areas.get(region, 0.0),
                    *plan_rings(radius_m),
                ],
            )
        return [
            Candidate(
                driver_id=_text(r[0]),
                distance_m=float(r[1]),
                lng=float(r[2]),
                lat=float(r[3]),
                vehicle_type=VehicleType(_text(r[4])),
                active_orders=int(r[5]),
                rating=_optional_float(r[6]),
                acceptance_rate=_optional_float(r[7]),
            )
            for r in rows
        ]

    async def position(self, region: str, driver_id: str) -> tuple[float, float] | None:
        """The driver's last stored position (lat, lng), if any."""
        with dependency_errors("Redis"):
            found = await self.redis.geopos(keys.locations(region), driver_id)
        if not found or found[0] is None:
            return None
        lng, lat = found[0]
        return float(lat), float(lng)

    async def last_fix(self, driver_id: str) -> Fix | None:
        """The driver's last stored fix, wherever it is registered (None if none)."""
        home = await self.home(driver_id)
        if home is None:
            return None
        with dependency_errors("Redis"):
            pipe = self.redis.pipeline(transaction=False)
            pipe.geopos(keys.locations(home.region), driver_id)
            pipe.hget(keys.last_fix(home.region), driver_id)
            found, ts = await pipe.execute()
        if not found or found[0] is None or ts is None:
            return None
        lng, lat = found[0]
        return Fix(driver_id, home.region, float(lat), float(lng), float(_text(ts)))

    # -- offline monitor --------------------------------------------------------------------

    async def sweep_expired(
        self, regions: Sequence[str], *, most: int = 1000
    ) -> list[ExpiredDriver]:
        """Take expired drivers off the map; return those pending a DRIVER_UNAVAILABLE."""
        with dependency_errors("Redis"):
            pipe = self.redis.pipeline(transaction=False)
            for region in regions:
                await self._sweep(
                    keys=[
                        keys.locations(region),
                        keys.heartbeats(region),
                        keys.unavailable_pending(region),
                    ],
                    args=[keys.driver_prefix(region), most],
                    client=pipe,
                )
            replies = await pipe.execute()
        found: list[ExpiredDriver] = []
        for region, reply in zip(regions, replies, strict=True):
            for i in range(0, len(reply), 2):
                orders = tuple(sorted(_text(o) for o in reply[i + 1]))
                found.append(ExpiredDriver(region, _text(reply[i]), orders))
        return found

    async def ack_unavailable(self, expired: ExpiredDriver) -> None:
        """Forget a pending driver once its DRIVER_UNAVAILABLE events are recorded."""
        with dependency_errors("Redis"):
            await self.redis.zrem(keys.unavailable_pending(expired.region), expired.driver_id)

    async def set_rating(self, driver_id: str, rating: float) -> bool:
        """Set a registered driver's rating (read by dispatch scoring); False if unknown."""
        found = await self.home(driver_id)
        if found is None:
            return False
        value = repr(float(rating))
        with dependency_errors("Redis"):
            await self.redis.hset(keys.profile(found.region, driver_id), "rating", value)
            await self.redis.hset(keys.home(driver_id), "rating", value)
        return True
