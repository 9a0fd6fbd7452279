import pytest

from ontheway.roads.tags import (
    CLASS_SPEEDS_KPH,
    KPH_PER_MPH,
    direction,
    is_car_road,
    parse_maxspeed,
    speeds_kph,
    street_name,
)


@pytest.mark.parametrize(
    ("value", "kph"),
    [
        ("50", 50.0),
        ("30 mph", 30 * KPH_PER_MPH),
        ("25mph", 25 * KPH_PER_MPH),
        ("60 km/h", 60.0),
        ("40 kmh", 40.0),
        ("10 knots", 18.52),
        ("50;30", 50.0),
        ("walk", 6.0),
    ],
)
def test_maxspeed_is_read_in_kmh_with_its_unit(value: str, kph: float) -> None:
    assert parse_maxspeed(value) == pytest.approx(kph)


@pytest.mark.parametrize("value", [None, "", "none", "signals", "RU:urban", "0", "-5", "900", "x"])
def test_maxspeed_without_a_usable_number_gives_nothing(value: str | None) -> None:
    assert parse_maxspeed(value) is None


def test_a_way_without_maxspeed_drives_at_its_class_speed() -> None:
    assert speeds_kph({"highway": "residential"}) == (CLASS_SPEEDS_KPH["residential"],) * 2


def test_maxspeed_forward_and_backward_override_maxspeed() -> None:
    tags = {"highway": "primary", "maxspeed": "50", "maxspeed:backward": "30"}
    assert speeds_kph(tags) == (50.0, 30.0)


@pytest.mark.parametrize(
    ("tags", "forward", "backward"),
    [
        ({"highway": "residential"}, True, True),
        ({"highway": "residential", "oneway": "yes"}, True, False),
        ({"highway": "residential", "oneway": "1"}, True, False),
        ({"highway": "residential", "oneway": "-1"}, False, True),
        ({"highway": "motorway"}, True, False),
        ({"highway": "motorway", "oneway": "no"}, True, True),
        ({"highway": "primary", "junction": "roundabout"}, True, False),
    ],
)
def test_oneway_gives_the_directions_a_car_may_take(
    tags: dict[str, str], forward: bool, backward: bool
) -> None:
    allowed = direction(tags)
    assert allowed is not None
    assert (allowed.forward, allowed.backward) == (forward, backward)


def test_a_reversible_way_has_no_fixed_direction() -> None:
    assert direction({"highway": "primary", "oneway": "reversible"}) is None


@pytest.mark.parametrize(
    ("tags", "usable"),
    [
        ({"highway": "residential"}, True),
        ({"highway": "motorway_link"}, True),
        ({"highway": "footway"}, False),
        ({"highway": "cycleway"}, False),
        ({"highway": "corridor"}, False),
        ({"building": "yes"}, False),
        ({"highway": "service", "access": "private"}, False),
        ({"highway": "service", "access": "private", "motorcar": "yes"}, True),
        ({"highway": "primary", "motor_vehicle": "no"}, False),
        ({"highway": "pedestrian", "area": "yes"}, False),
    ],
)
def test_only_roads_that_cars_may_drive_on_are_car_roads(
    tags: dict[str, str], usable: bool
) -> None:
    assert is_car_road(tags) is usable


def test_a_street_is_named_by_its_name_then_its_ref() -> None:
    assert street_name({"name": "Market Street", "ref": "X"}) == "Market Street"
    assert street_name({"ref": "I 880"}) == "I 880"
    assert street_name({}) is None
