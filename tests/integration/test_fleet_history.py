import time
from datetime import UTC, date, datetime

import pytest

from ontheway.connections import Connections
from ontheway.fleet.history import (
    HistoryWriter,
    drop_expired_partitions,
    ensure_day_partitions,
    partition_name,
)
from ontheway.fleet.model import Fix
from ontheway.regions import load_catalog
from ontheway.settings import Settings


async def test_every_fix_is_kept_in_the_history_of_its_shard(
    conns: Connections, settings: Settings, uid: str
) -> None:
    writer = HistoryWriter(conns, load_catalog(), settings)
    driver = f"h_{uid}"
    now = time.time()
    writer.on_applied([Fix(driver, "sf", 37.77, -122.41, now - 8)])
    writer.on_applied(
        [Fix(driver, "sf", 37.78, -122.42, now - 4), Fix(driver, "nyc", 40.7, -74.0, now)]
    )
    assert await writer.write_history() == 3
    async with conns.pool("americas").connection() as conn:
        cur = await conn.execute(
            "SELECT region, ST_Y(location::geometry), ST_X(location::geometry), recorded_at"
            " FROM driver_location_history WHERE driver_id = %s ORDER BY recorded_at",
            (driver,),
        )
        rows = await cur.fetchall()
    assert [(r[0], round(r[1], 5), round(r[2], 5)) for r in rows] == [
        ("sf", 37.77, -122.41),
        ("sf", 37.78, -122.42),
        ("nyc", 40.7, -74.0),
    ]
    assert rows[-1][3] == datetime.fromtimestamp(now, UTC)
    assert await writer.write_history() == 0


async def test_the_drivers_table_gets_each_drivers_latest_position(
    conns: Connections, settings: Settings, uid: str
) -> None:
    writer = HistoryWriter(conns, load_catalog(), settings)
    driver = f"h_{uid}"
    async with conns.pool("americas").connection() as conn:
        await conn.execute(
            "INSERT INTO drivers (driver_id, name, vehicle_type, region)"
            " VALUES (%s, 'H', 'car', 'sf')",
            (driver,),
        )
    now = round(time.time(), 3)  # to_timestamp() and Python may round a µs apart
    writer.on_applied(
        [Fix(driver, "sf", 37.70, -122.40, now - 5), Fix(driver, "sf", 37.71, -122.41, now)]
    )
    assert await writer.write_current() == 1
    async with conns.pool("americas").connection() as conn:
        cur = await conn.execute(
            "SELECT ST_Y(current_location::geometry), location_updated_at FROM drivers"
            " WHERE driver_id = %s",
            (driver,),
        )
        row = await cur.fetchone()
        await conn.execute("DELETE FROM drivers WHERE driver_id = %s", (driver,))
    assert row is not None
    assert round(row[0], 5) == 37.71
    assert row[1] == datetime.fromtimestamp(now, UTC)


async def test_day_partitions_past_retention_are_dropped(conns: Connections) -> None:
    async with conns.pool("europe").connection() as conn:
        await ensure_day_partitions(conn, date(2001, 1, 2))
        dropped = await drop_expired_partitions(conn, date(2001, 3, 1), retention_days=57)
        assert dropped == [partition_name(date(2001, 1, 1)), partition_name(date(2001, 1, 2))]
        dropped = await drop_expired_partitions(conn, date(2001, 3, 1), retention_days=1)
        assert dropped == [partition_name(date(2001, 1, 3))]


async def test_fixes_a_shard_could_not_take_are_kept_for_the_next_write(
    conns: Connections, settings: Settings, uid: str
) -> None:
    from ontheway.errors import DependencyUnavailable

    class Flaky(HistoryWriter):
        async def _copy(self, shard: str, fixes: list[Fix]) -> None:
            if shard == "americas":
                raise DependencyUnavailable("the shard 'americas' is down")

    writer = Flaky(conns, load_catalog(), settings)
    now = time.time()
    writer.on_applied(
        [Fix(f"h_{uid}", "paris", 48.85, 2.35, now), Fix(f"h_{uid}", "sf", 37.7, -122.4, now)]
    )
    with pytest.raises(DependencyUnavailable):
        await writer.write_history()
    assert [f.region for f in writer._buffer] == ["sf"]
    assert writer.stats.written == 1
