from ontheway.connections import Connections


async def test_geosearch_returns_the_nearest_members_first(conns: Connections, uid: str) -> None:
    redis = conns.require_redis()
    key = f"test:geo:{{{uid}}}"
    await redis.geoadd(
        key,
        [
            -122.4194,
            37.7749,
            "city_hall",
            -122.3937,
            37.7955,
            "ferry_building",
            -122.2711,
            37.8044,
            "oakland",
        ],
    )
    try:
        found = await redis.geosearch(
            key, longitude=-122.40, latitude=37.79, radius=5, unit="km", sort="ASC", withdist=True
        )
        assert [name for name, _ in found] == [b"ferry_building", b"city_hall"]
        assert found[0][1] < found[1][1]
    finally:
        await redis.delete(key)


async def test_redis_keeps_an_append_only_file(conns: Connections) -> None:
    config = await conns.require_redis().config_get("appendonly")
    assert config == {"appendonly": "yes"}
