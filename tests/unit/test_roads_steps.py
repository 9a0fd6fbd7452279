import pytest

from ontheway.roads.steps import Segment, build_steps, turn_angle, turn_name

# Points about 100 m apart around (37.79, -122.40): east, then north.
ORIGIN = (37.79, -122.40)
EAST = (37.79, -122.39886)
NORTH_OF_EAST = (37.7909, -122.39886)
SOUTH_OF_EAST = (37.7891, -122.39886)


def seg(a: tuple[float, float], b: tuple[float, float], street: str | None) -> Segment:
    return Segment(a[0], a[1], b[0], b[1], street, 100.0, 10.0)


@pytest.mark.parametrize(
    ("angle", "name"),
    [
        (0, "straight"),
        (-20, "straight"),
        (40, "slight_right"),
        (-40, "slight_left"),
        (90, "right"),
        (-90, "left"),
        (150, "sharp_right"),
        (-150, "sharp_left"),
        (180, "uturn"),
    ],
)
def test_a_change_of_bearing_names_the_turn(angle: float, name: str) -> None:
    assert turn_name(angle) == name


def test_turn_angles_wrap_around_north() -> None:
    assert turn_angle(350, 10) == pytest.approx(20)
    assert turn_angle(10, 350) == pytest.approx(-20)


def test_turning_from_east_to_north_is_a_left_turn_onto_the_new_street() -> None:
    steps = build_steps([seg(ORIGIN, EAST, "Pine Street"), seg(EAST, NORTH_OF_EAST, "Kearny")])
    assert [s.turn for s in steps] == ["depart", "left", "arrive"]
    assert [s.street for s in steps[:2]] == ["Pine Street", "Kearny"]
    assert steps[1].instruction == "Turn left onto Kearny"
    assert steps[0].distance_m == 100.0


def test_turning_from_east_to_south_is_a_right_turn() -> None:
    steps = build_steps([seg(ORIGIN, EAST, "Pine"), seg(EAST, SOUTH_OF_EAST, "Kearny")])
    assert steps[1].turn == "right"


def test_segments_of_one_street_make_one_step_with_their_summed_distance() -> None:
    steps = build_steps([seg(ORIGIN, EAST, "Pine"), seg(EAST, NORTH_OF_EAST, "Pine")])
    assert [s.turn for s in steps] == ["depart", "arrive"]
    assert steps[0].distance_m == 200.0
    assert steps[0].duration_s == 20.0


def test_a_sharp_bend_of_an_unnamed_road_is_a_step() -> None:
    steps = build_steps([seg(ORIGIN, EAST, None), seg(EAST, NORTH_OF_EAST, None)])
    assert [s.turn for s in steps] == ["depart", "left", "arrive"]


def test_a_leg_to_a_stop_ends_at_a_waypoint_and_an_empty_leg_has_no_steps() -> None:
    assert build_steps([seg(ORIGIN, EAST, "Pine")], "waypoint")[-1].turn == "waypoint"
    assert build_steps([]) == []
