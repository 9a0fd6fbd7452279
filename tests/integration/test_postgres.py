from ontheway.connections import Connections
from ontheway.settings import Settings


async def test_every_shard_measures_geography_distances_with_postgis(conns: Connections) -> None:
    assert sorted(conns.shards) == ["americas", "asia_pacific", "europe"]
    for pool in conns.shards.values():
        async with pool.connection() as conn:
            cur = await conn.execute(
                "SELECT ST_Distance("
                "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography,"
                "ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography)",
                (-122.4194, 37.7749, -122.2711, 37.8044),  # SF City Hall to Oakland (lng, lat)
            )
            row = await cur.fetchone()
            assert row is not None
            assert 13_000 < row[0] < 13_500  # metres on the spheroid


async def test_each_shard_is_its_own_database(conns: Connections) -> None:
    names = set()
    for pool in conns.shards.values():
        async with pool.connection() as conn:
            row = await (await conn.execute("SELECT current_database()")).fetchone()
            assert row is not None
            names.add(row[0])
    assert names == {"ontheway_americas", "ontheway_europe", "ontheway_asia_pacific"}


async def test_pooled_connections_autocommit_and_keep_generic_plans(
    conns: Connections, settings: Settings
) -> None:
    """A statement alone commits by itself (one round trip); prepared statements keep one
    generic plan (``pg_plan_cache_mode``), unless the setting leaves the server's."""
    async with conns.shard_connection("americas") as conn:
        assert conn.autocommit
        cur = await conn.execute("SHOW plan_cache_mode")
        assert await cur.fetchone() == {"plan_cache_mode": "force_generic_plan"}
    plain = await Connections.open(
        settings.model_copy(update={"pg_plan_cache_mode": ""}), shards=["americas"]
    )
    try:
        async with plain.shard_connection("americas") as conn:
            cur = await conn.execute("SHOW plan_cache_mode")
            assert await cur.fetchone() == {"plan_cache_mode": "auto"}
    finally:
        await plain.close()
