"""The feasibility checker: a valid solution passes, and each broken rule is named."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ontheway.cli import app
from ontheway.dispatch.policies import BatchedPolicy
from ontheway.errors import InvalidInput
from ontheway.mdrp.check import check_solution
from ontheway.mdrp.instance import load_instance
from ontheway.mdrp.simulate import simulate
from ontheway.mdrp.solution import read_solution, write_solution
from tests.unit.test_mdrp_instance import tiny, write_instance

# The valid batched solution of the tiny instance (see test_mdrp_simulate):
#   assignments: 17 21 c1 o2 o1 / orders: o2 12 21 21 27 c1, o1 10 20 21 36 c1
#   couriers: c1 17 0 r1, c1 23 r1 o2, c1 29 o2 o1


@pytest.fixture
def solved(tmp_path: Path) -> tuple[Path, Path]:
    instance_dir = tiny(tmp_path / "tiny")
    out = tmp_path / "solution"
    write_solution(simulate(load_instance(instance_dir), BatchedPolicy()), out)
    return instance_dir, out


def edit(out: Path, name: str, old: str, new: str) -> None:
    path = out / f"solution_info_{name}.txt"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def problems(instance_dir: Path, out: Path) -> list[str]:
    return check_solution(load_instance(instance_dir), read_solution(out))


def test_the_valid_solution_has_no_problem(solved: tuple[Path, Path]) -> None:
    assert problems(*solved) == []


@pytest.mark.parametrize(
    ("name", "old", "new", "expected"),
    [
        ("assignments", "17 21 c1", "11 21 c1", "assignments.txt:2: assigned at 11, before o2"),
        ("assignments", "17 21 c1", "17 20 c1", "picked up at 20, before o2 is ready"),
        ("assignments", "o2 o1", "o2 o1\n17 21 c1 o1", "o1 is in more than one assignment"),
        ("assignments", "o2 o1", "o1 o2", "orders.txt:2: drop-off out of the bundle's sequence"),
        ("assignments", "17 21 c1", "18 21 c1", "c1 leaves for it before the assignment"),
        ("assignments", "17 21 c1", "17 22 c1", "c1 is not at r1 for pickup"),
        ("assignments", "17 21 c1 o2 o1", "17 21 c1 o2", "o1 delivered but not assigned"),
        ("orders", "o2 12 21 21 27", "o2 12 21 21 26", "c1 is not at o2's diner at drop-off"),
        ("orders", "o2 12 21 21 27", "o2 12 22 21 27", "placement or ready time differ"),
        ("orders", "o2 12 21 21 27 c1", "o2 12 21 20 27 c1", "pickup time differ"),
        ("couriers", "c1 29 o2 o1", "c1 29 r1 o1", "couriers.txt:4: leaves r1 but the courier"),
        ("couriers", "c1 23 r1 o2", "c1 18 r1 o2", "couriers.txt:3: leaves at 18, before arriving"),
        ("couriers", "c1 17 0 r1", "c1 17 r1 r1", "leaves r1 but the courier is at 0"),
        ("couriers", "c1 29 o2 o1", "c1 29 o2 o9", "unknown destination o9"),
    ],
)
def test_each_broken_rule_is_reported_with_its_file_and_line(
    solved: tuple[Path, Path], name: str, old: str, new: str, expected: str
) -> None:
    instance_dir, out = solved
    edit(out, name, old, new)
    found = problems(instance_dir, out)
    assert any(expected in p for p in found), found


def test_a_pickup_after_the_couriers_off_time_is_reported(solved: tuple[Path, Path]) -> None:
    instance_dir, out = solved
    write_instance(
        instance_dir,
        ["r1\t0\t0"],
        ["o1\t0\t960\t10\tr1\t20", "o2\t0\t-640\t12\tr1\t21"],
        ["c1\t640\t0\t0\t20"],
    )
    assert any("picked up after c1's off time 20" in p for p in problems(instance_dir, out))


def test_moves_of_one_courier_split_in_two_blocks_are_reported(tmp_path: Path) -> None:
    instance_dir = write_instance(
        tmp_path / "two",
        ["r1\t0\t0"],
        ["o1\t0\t320\t5\tr1\t10", "o2\t0\t320\t6\tr1\t10"],
        ["c1\t0\t0\t0\t60", "c2\t0\t0\t0\t60"],
    )
    out = tmp_path / "s"
    out.mkdir()
    (out / "solution_info_assignments.txt").write_text("h\n5 10 c1 o1\n6 10 c2 o2\n5 18 c1 o2\n")
    (out / "solution_info_orders.txt").write_text("h\no1 5 10 10 15 c1\n")
    (out / "solution_info_couriers.txt").write_text("h\nc1 5 0 r1\nc2 6 0 r1\nc1 12 r1 o1\n")
    found = problems(instance_dir, out)
    assert any("couriers.txt:4: moves of c1 are not in one block" in p for p in found), found
    assert any("o2 is in more than one assignment" in p for p in found), found


def test_tabs_in_the_orders_file_are_refused_with_the_line(solved: tuple[Path, Path]) -> None:
    _, out = solved
    edit(out, "orders", "o1 10 20 21 36 c1", "o1\t10\t20\t21\t36\tc1")
    with pytest.raises(InvalidInput, match=r"solution_info_orders.txt:3: tabs are not accepted"):
        read_solution(out)


def test_the_check_command_exits_0_1_or_2(solved: tuple[Path, Path]) -> None:
    instance_dir, out = solved
    runner = CliRunner()
    ok = runner.invoke(app, ["mdrp", "check", str(instance_dir), str(out)])
    assert ok.exit_code == 0 and "FEASIBLE" in ok.output
    edit(out, "assignments", "17 21 c1", "11 21 c1")
    broken = runner.invoke(app, ["mdrp", "check", str(instance_dir), str(out)])
    assert broken.exit_code == 1 and "INFEASIBLE" in broken.output
    edit(out, "assignments", "11 21 c1", "eleven 21 c1")
    malformed = runner.invoke(app, ["mdrp", "check", str(instance_dir), str(out)])
    assert malformed.exit_code == 2
    assert "solution_info_assignments.txt:2: 'eleven' is not a time" in malformed.output
