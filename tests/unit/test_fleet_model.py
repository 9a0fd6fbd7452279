import json
import math

import pytest

from ontheway.errors import Forbidden, InvalidInput
from ontheway.fleet.keys import active_orders, assignment_lock, locations, profile, status
from ontheway.fleet.locate import RegionLocator
from ontheway.fleet.model import (
    check_reporter,
    check_timestamp,
    parse_location,
    read_location_message,
)
from ontheway.fleet.ratelimit import RateLimiter
from ontheway.fleet.search import first_count, plan_rings
from ontheway.regions import OutsideAllRegions, load_catalog

NOW = 1_800_000_000.0
GOOD = {"driver_id": "drv_001", "lat": 37.7749, "lng": -122.4194, "timestamp": NOW}


def test_a_well_formed_fix_is_accepted() -> None:
    fix = parse_location(GOOD)
    assert (fix.driver_id, fix.lat, fix.lng, fix.timestamp) == ("drv_001", 37.7749, -122.4194, NOW)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("lat", 90.5),
        ("lat", -91),
        ("lng", 180.01),
        ("lat", math.nan),
        ("lng", math.inf),
        ("lat", "37.7"),
        ("lng", None),
        ("timestamp", "yesterday"),
        ("driver_id", "drv {sf}"),
        ("driver_id", ""),
    ],
)
def test_a_bad_field_is_refused_and_named(field: str, value: object) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_location({**GOOD, field: value})
    assert caught.value.field == field


def test_a_fix_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidInput, match="JSON object"):
        parse_location([37.7, -122.4])


SOCKET_MESSAGES = [
    json.dumps(GOOD),
    json.dumps({**GOOD, "seq": 7}),
    json.dumps({**GOOD, "lat": 37, "heading": 90}),  # an integer, an unknown field
    json.dumps({"updates": [GOOD, {**GOOD, "driver_id": "drv_002"}]}),
    json.dumps({"updates": [GOOD], "seq": "a"}),
    json.dumps({"updates": []}),
    json.dumps({**GOOD, "lat": "37.7"}),
    json.dumps({**GOOD, "lat": True}),
    json.dumps({**GOOD, "driver_id": 1}),
    json.dumps({"updates": [GOOD, {**GOOD, "lng": 200}]}),
    json.dumps({"updates": GOOD}),
    json.dumps({"type": "accept", "order_id": "ord_1"}),
    json.dumps({**GOOD, "type": "decline", "order_id": "ord_1"}),
    json.dumps({**GOOD, "updates": [GOOD]}),
    json.dumps([GOOD]),
    '{"driver_id": "drv_001", "lat": NaN, "lng": -122.4, "timestamp": 1800000000}',
    '{"driver_id": "drv_001", "driver_id": "drv {sf}", "lat": 37.7, "lng": -122.4, "timestamp": 1}',
    '{"driver_id": "drv_001", "lat": 1e400, "lng": -122.4, "timestamp": 1800000000}',
    "{not json",
]


@pytest.mark.parametrize("text", SOCKET_MESSAGES)
def test_the_sockets_fast_path_takes_exactly_the_messages_the_slow_path_accepts(
    text: str,
) -> None:
    """The fast path (pydantic reading the text) must agree with the slow one (json.loads,
    then each entry validated), or a message would be treated differently for its speed."""
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    slow: tuple[list[tuple[str, float, float, float]], bool, object] | None = None
    if isinstance(data, dict) and data.get("type") is None:
        batch = "updates" in data
        entries = data["updates"] if batch else [data]
        try:
            fixes = [parse_location(e) for e in entries] if isinstance(entries, list) else None
        except InvalidInput:
            fixes = None
        if fixes is not None:
            rows = [(f.driver_id, f.lat, f.lng, f.timestamp) for f in fixes]
            slow = (rows, batch, data.get("seq"))
    fast = read_location_message(text)
    if slow is None:
        assert fast is None
    else:
        assert fast is not None
        assert (
            [(f.driver_id, f.lat, f.lng, f.timestamp) for f in fast.fixes],
            fast.batch,
            fast.seq,
        ) == slow


def test_timestamps_far_in_the_future_or_long_past_are_refused() -> None:
    check_timestamp(NOW + 5, NOW, max_skew_s=30, max_age_s=300)
    check_timestamp(NOW - 299, NOW, max_skew_s=30, max_age_s=300)
    with pytest.raises(InvalidInput, match="future"):
        check_timestamp(NOW + 3600, NOW, max_skew_s=30, max_age_s=300)
    with pytest.raises(InvalidInput, match="old"):
        check_timestamp(NOW - 86400, NOW, max_skew_s=30, max_age_s=300)


def test_a_driver_reports_only_its_own_position_and_ops_any() -> None:
    check_reporter("driver", "drv_001", "drv_001")
    check_reporter("ops", "ops_1", "drv_001")
    with pytest.raises(Forbidden):
        check_reporter("driver", "drv_002", "drv_001")
    with pytest.raises(Forbidden):
        check_reporter("customer", "user_1", "drv_001")


def test_one_key_floods_its_bucket_without_touching_another() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=3)
    assert [limiter.allow("a", NOW) for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", NOW)
    assert limiter.allow("a", NOW + 1.0)
    assert not limiter.allow("a", NOW + 1.0)


def test_idle_buckets_are_forgotten() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2)
    limiter.allow("a", NOW)
    limiter.allow("b", NOW + 10)
    assert len(limiter) == 1


def test_a_bucket_keeps_its_tokens_when_its_generation_turns_over() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2)  # full again after 2 s
    assert limiter.allow("b", NOW)
    assert [limiter.allow("a", NOW + 1.9) for _ in range(3)] == [True, True, False]
    # The generations turn over at NOW + 2.1: "a" has refilled 0.2 token since NOW + 1.9, not
    # a whole bucket; "b" is kept too (used one refill time ago at most).
    assert not limiter.allow("a", NOW + 2.1)
    assert len(limiter) == 2
    assert limiter.allow("a", NOW + 3.0)
    assert limiter.allow("c", NOW + 10)  # two refill times later: everything else forgotten
    assert len(limiter) == 1


def test_search_rings_double_from_a_small_circle_up_to_the_radius() -> None:
    assert plan_rings(3218.688) == [50.0, 100.0, 200.0, 400.0, 800.0, 1600.0, 3218.688]
    assert plan_rings(70.0) == [70.0]
    assert plan_rings(80.0) == [50.0, 80.0]
    assert first_count(10) == 40
    with pytest.raises(ValueError):
        plan_rings(0.0)


def test_live_state_keys_carry_the_region_as_a_hash_tag() -> None:
    assert locations("sf") == "drivers:locations:{sf}"
    assert status("sf", "drv_001") == "driver:{sf}:drv_001:status"
    assert active_orders("sf", "drv_001") == "driver:{sf}:drv_001:active_orders"
    assert profile("sf", "drv_001") == "driver:{sf}:drv_001:profile"
    assert assignment_lock("sf", "ord_1") == "order:{sf}:ord_1:assignment_lock"


def test_the_region_locator_answers_as_the_catalog_does() -> None:
    catalog = load_catalog()
    locator = RegionLocator(catalog)
    for region in catalog:
        b = region.bbox
        for lat, lng in [
            (region.center.lat, region.center.lng),
            (b.min_lat, b.min_lng),
            (b.max_lat, b.max_lng),
        ]:
            assert locator.region_for(lat, lng) == catalog.region_for(lat, lng).region
    with pytest.raises(OutsideAllRegions):
        locator.region_for(0.0, -150.0)
    with pytest.raises(OutsideAllRegions):
        locator.region_for(math.nan, 0.0)


def test_only_whole_days_before_the_retention_window_expire() -> None:
    from datetime import date

    from ontheway.fleet.history import expired_partitions, partition_name

    names = [partition_name(date(2026, 11, d)) for d in (1, 2, 3)] + ["orders_y2026m11"]
    assert expired_partitions(names, date(2026, 11, 4), retention_days=2) == [
        partition_name(date(2026, 11, 1))
    ]
