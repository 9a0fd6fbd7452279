import pytest

from ontheway.sim.clock import BadTime, parse_duration_s, parse_start
from ontheway.sim.motion import Trip, distance_m, split_legs

LINE = [(37.7900, -122.4000), (37.7900, -122.3990), (37.7910, -122.3990)]


def test_a_trip_starts_at_its_first_point_and_ends_at_its_last() -> None:
    trip = Trip(LINE, start_s=100.0, duration_s=60.0)
    assert trip.position(50.0) == LINE[0]
    assert trip.position(100.0) == LINE[0]
    assert trip.position(160.0) == LINE[-1]
    assert trip.position(1e9) == LINE[-1]


def test_a_trip_moves_at_an_even_pace_along_the_polyline() -> None:
    trip = Trip(LINE, start_s=0.0, duration_s=100.0)
    first = distance_m(LINE[0], LINE[1])
    assert trip.length_m == pytest.approx(first + distance_m(LINE[1], LINE[2]))
    # At the corner's time the driver is at the corner; a quarter along the first segment's
    # time it is a quarter along that segment.
    corner_s = 100.0 * first / trip.length_m
    assert trip.position(corner_s) == pytest.approx(LINE[1])
    lat, lng = trip.position(corner_s / 4)
    assert distance_m(LINE[0], (lat, lng)) == pytest.approx(first / 4, rel=1e-3)
    assert lat == pytest.approx(LINE[0][0])


def test_a_trip_of_no_length_stays_put() -> None:
    trip = Trip([LINE[0]], start_s=0.0, duration_s=30.0)
    assert trip.position(15.0) == LINE[0]


def test_a_route_is_cut_into_its_legs_at_each_leg_end() -> None:
    route = {
        "geometry": [[37.79, -122.40], [37.79, -122.399], [37.791, -122.399], [37.792, -122.399]],
        "legs": [
            {"duration_s": 40.0, "end": {"lat": 37.791, "lng": -122.399}},
            {"duration_s": 20.0, "end": {"lat": 37.792, "lng": -122.399}},
        ],
    }
    (first, t1), (second, t2) = split_legs(route)
    assert first == [(37.79, -122.40), (37.79, -122.399), (37.791, -122.399)]
    assert second == [(37.791, -122.399), (37.792, -122.399)]
    assert (t1, t2) == (40.0, 20.0)


def test_a_leg_that_goes_nowhere_is_one_point() -> None:
    route = {
        "geometry": [[37.79, -122.40], [37.791, -122.40]],
        "legs": [
            {"duration_s": 0.0, "end": {"lat": 37.79, "lng": -122.40}},
            {"duration_s": 30.0, "end": {"lat": 37.791, "lng": -122.40}},
        ],
    }
    (first, t1), (second, _) = split_legs(route)
    assert first == [(37.79, -122.40)] and t1 == 0.0
    assert second == [(37.79, -122.40), (37.791, -122.40)]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("90m", 5400), ("1h30m", 5400), ("45s", 45), ("600", 600), ("0.5h", 1800)],
)
def test_durations_read_as_seconds(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


@pytest.mark.parametrize("text", ["", "2 hours", "h", "-", "1d"])
def test_unreadable_durations_are_refused(text: str) -> None:
    with pytest.raises(BadTime):
        parse_duration_s(text)


def test_the_start_is_a_time_of_day() -> None:
    from datetime import datetime

    assert parse_start("11:00", datetime(2026, 1, 2, 8, 5)) == datetime(2026, 1, 2, 11, 0)
    with pytest.raises(BadTime):
        parse_start("25:00", datetime(2026, 1, 2))
