"""Reading MDRP instances: the real format, and every bad input named by file and line."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ontheway.cli import app
from ontheway.errors import InvalidInput
from ontheway.mdrp.instance import load_instance

PARAMS = "320\t4\t4\t40\t90\t10\t15"


def write_instance(
    folder: Path,
    restaurants: list[str],
    orders: list[str],
    couriers: list[str],
    params: str = PARAMS,
) -> Path:
    """Write a tiny instance (tab-separated lines without their header) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "restaurants.txt": ("restaurant\tx\ty", restaurants),
        "orders.txt": ("order\tx\ty\tplacement_time\trestaurant\tready_time", orders),
        "couriers.txt": ("courier\tx\ty\ton_time\toff_time", couriers),
        "instance_parameters.txt": (
            "meters_per_minute\tpickup service minutes\tdropoff service minutes\t"
            "target click-to-door\tmaximum click-to-door\tpay per order\tguaranteed pay per hour",
            [params],
        ),
    }
    for name, (header, lines) in files.items():
        (folder / name).write_text("\n".join([header, *lines]) + "\n")
    return folder


def tiny(folder: Path) -> Path:
    """One restaurant, two orders, one courier."""
    return write_instance(
        folder,
        ["r1\t0\t0"],
        ["o1\t0\t960\t10\tr1\t20", "o2\t0\t-640\t12\tr1\t21"],
        ["c1\t640\t0\t0\t60"],
    )


def test_a_well_formed_instance_is_read_with_its_parameters(tmp_path: Path) -> None:
    instance = load_instance(tiny(tmp_path / "tiny"))
    assert instance.name == "tiny"
    assert instance.restaurants == {"r1": (0.0, 0.0)}
    assert instance.orders["o2"].placed_min == 12 and instance.orders["o2"].ready_min == 21
    assert instance.couriers["c1"].off_min == 60
    assert instance.params.meters_per_minute == 320
    assert instance.params.service().pickup_half == 2


def test_the_real_test_instance_is_read_whole_as_its_characteristics_count_it() -> None:
    folder = Path("tests/data/mdrp/0r50t100s1p100")
    instance = load_instance(folder)
    counts = dict(
        line.split(": ")
        for line in (folder / "instance_characteristics.txt").read_text().split("\n")[:3]
    )
    assert len(instance.orders) == int(counts["number of orders"]) == 242
    assert len(instance.restaurants) == int(counts["number of restaurants"])
    assert len(instance.couriers) == int(counts["number of couriers"]) == 61


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: (f / "couriers.txt").unlink(), "couriers.txt: missing instance file"),
        (
            lambda f: write_instance(
                f, ["r1\t0\t0"], ["o1\t0\t960\t10\tr9\t20"], ["c1\t0\t0\t0\t60"]
            ),
            "orders.txt:2: order o1 names unknown restaurant 'r9'",
        ),
        (
            lambda f: write_instance(
                f, ["r1\t0\t0"], ["o1\t0\t9\t10\tr1\t20"], ["c1\t0\t0\t60\t30"]
            ),
            "couriers.txt:2: courier c1 goes off duty (30) before it comes on (60)",
        ),
        (
            lambda f: write_instance(f, ["r1\t0\t0", "r2\t1\tten"], [], []),
            "restaurants.txt:3: y 'ten' is not a number",
        ),
        (
            lambda f: write_instance(f, ["r1\t0\t0"], ["o1\t0\t9\t10\tr1"], []),
            "orders.txt:2: 5 fields, expected 6",
        ),
        (
            lambda f: write_instance(f, ["r1\t0\t0"], ["o1\t0\t9\t10.5\tr1\t20"], []),
            "orders.txt:2: placement_time '10.5' is not a whole number",
        ),
        (
            lambda f: (f / "restaurants.txt").write_text("id x y\nr1 0 0\n"),
            "restaurants.txt:1: header must be restaurant | x | y",
        ),
        (
            lambda f: write_instance(f, ["r1\t0\t0", "r1\t5\t5"], [], []),
            "restaurants.txt:3: duplicate id 'r1'",
        ),
    ],
)
def test_bad_input_is_refused_naming_the_file_and_the_line(
    tmp_path: Path, change: object, message: str
) -> None:
    folder = tiny(tmp_path / "bad")
    assert callable(change)
    change(folder)
    with pytest.raises(InvalidInput) as caught:
        load_instance(folder)
    assert message in caught.value.message
    assert str(folder) in caught.value.message


def test_the_run_command_exits_2_on_bad_input_with_file_and_line(tmp_path: Path) -> None:
    folder = write_instance(
        tmp_path / "bad", ["r1\t0\t0"], ["o1\t0\t960\t10\tr1\t20", "o2\t1\t1\t11\tr7\t30"], []
    )
    result = CliRunner().invoke(app, ["mdrp", "run", str(folder), "--out", str(tmp_path / "s")])
    assert result.exit_code == 2
    assert "orders.txt:3: order o2 names unknown restaurant 'r7'" in result.output
    missing = CliRunner().invoke(app, ["mdrp", "run", str(tmp_path / "nowhere"), "--out", "x"])
    assert missing.exit_code == 2
    assert "not an instance folder" in missing.output
