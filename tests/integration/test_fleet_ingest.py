import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from ontheway.auth import Principal, Role
from ontheway.connections import Connections
from ontheway.errors import Forbidden, RateLimited
from ontheway.fleet import keys
from ontheway.fleet.ingest import Ingestor
from ontheway.fleet.model import Fix, Outcome, UnknownDriver, VehicleType
from ontheway.fleet.service import open_store
from ontheway.regions import load_catalog
from ontheway.settings import Settings

SF = (37.7749, -122.4194)
SAN_JOSE = (37.3382, -121.8863)


@pytest.fixture
async def ingestor(conns: Connections, settings: Settings) -> AsyncIterator[Ingestor]:
    store = open_store(conns.require_redis(), settings)
    ingest = Ingestor(store, load_catalog(), settings)
    ingest.start()
    yield ingest
    await ingest.aclose()


async def forget(conns: Connections, driver: str) -> None:
    redis = conns.require_redis()
    for region in ("sf", "san_jose"):
        await redis.delete(
            keys.profile(region, driver),
            keys.status(region, driver),
            keys.active_orders(region, driver),
        )
        await redis.zrem(keys.locations(region), driver)
        await redis.zrem(keys.heartbeats(region), driver)
        await redis.hdel(keys.last_fix(region), driver)
    await redis.delete(keys.home(driver))


def fix_of(driver: str, at: tuple[float, float], ts: float | None = None) -> dict[str, object]:
    return {"driver_id": driver, "lat": at[0], "lng": at[1], "timestamp": ts or time.time()}


async def test_many_drivers_fixes_are_written_in_few_calls(
    ingestor: Ingestor, conns: Connections, uid: str
) -> None:
    drivers = [f"d{i}_{uid}" for i in range(300)]
    await ingestor.store.register_many([(d, "sf", VehicleType.SCOOTER) for d in drivers])
    ops = Principal("ops_1", Role.OPS)
    flushes = ingestor.stats.flushes
    futures = [ingestor.submit(ingestor.admit(fix_of(d, SF), ops)) for d in drivers]
    assert set(await asyncio.gather(*futures)) == {Outcome.APPLIED}
    assert ingestor.stats.flushes - flushes <= 3
    assert await ingestor.store.position("sf", drivers[-1]) == pytest.approx(SF, abs=1e-5)
    for d in drivers:
        await forget(conns, d)


async def test_a_driver_crossing_into_another_region_moves_there(
    ingestor: Ingestor, conns: Connections, uid: str
) -> None:
    driver = f"d_{uid}"
    await ingestor.store.register_driver(driver, "sf", VehicleType.CAR)
    me = Principal(driver, Role.DRIVER)
    assert await ingestor.submit(ingestor.admit(fix_of(driver, SF), me)) is Outcome.APPLIED
    fix = ingestor.admit(fix_of(driver, SAN_JOSE, time.time() + 1), me)
    assert fix.region == "san_jose"
    assert await ingestor.submit(fix) is Outcome.APPLIED
    home = await ingestor.store.home(driver)
    assert home is not None and home.region == "san_jose"
    assert await ingestor.store.position("sf", driver) is None
    assert await ingestor.store.position("san_jose", driver) == pytest.approx(SAN_JOSE, abs=1e-5)
    await forget(conns, driver)


async def test_a_fix_for_an_unknown_driver_fails(ingestor: Ingestor, uid: str) -> None:
    ops = Principal("ops_1", Role.OPS)
    with pytest.raises(UnknownDriver):
        await ingestor.submit(ingestor.admit(fix_of(f"ghost_{uid}", SF), ops))


async def test_ops_limited_to_other_regions_may_not_report_here(ingestor: Ingestor) -> None:
    with pytest.raises(Forbidden):
        ingestor.admit(fix_of("drv_x", SF), Principal("ops_2", Role.OPS, frozenset({"nyc"})))


async def test_a_flooding_driver_is_limited_and_others_are_not(
    ingestor: Ingestor, uid: str
) -> None:
    flooder, calm = Principal(f"f_{uid}", Role.DRIVER), Principal(f"c_{uid}", Role.DRIVER)
    now = time.time()
    admitted = 0
    with pytest.raises(RateLimited):
        for _ in range(1000):
            ingestor.admit(fix_of(flooder.sub, SF, now), flooder, now)
            admitted += 1
    assert admitted == ingestor.limiter.burst
    assert isinstance(ingestor.admit(fix_of(calm.sub, SF, now), calm, now), Fix)
