"""Solutions in the research format: three whitespace-separated text files, one header each.

``solution_info_assignments.txt``: ``assignment_time pickup_time courier order [order ...]``;
``solution_info_orders.txt``: ``order placement_time ready_time pickup_time dropoff_time
courier`` (single spaces: the research evaluator reads it with ``sep=' '``);
``solution_info_couriers.txt``: ``courier departure_time origin destination``, each courier's
moves in one block, origin ``0`` for the courier's on-location.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ontheway.errors import InvalidInput

ASSIGNMENTS = "solution_info_assignments.txt"
ORDERS = "solution_info_orders.txt"
COURIERS = "solution_info_couriers.txt"
ON_LOCATION = "0"


@dataclass(frozen=True)
class AssignmentLine:
    """One assignment: when it was made, the pickup time, the courier, the drop-off sequence."""

    assigned_min: int
    pickup_min: int
    courier: str
    orders: tuple[str, ...]
    line: int = 0


@dataclass(frozen=True)
class OrderLine:
    """One delivered order with its times and courier."""

    order: str
    placed_min: int
    ready_min: int
    pickup_min: int
    dropoff_min: int
    courier: str
    line: int = 0


@dataclass(frozen=True)
class Move:
    """A courier leaving ``origin`` (``0``: its on-location) for ``destination``."""

    courier: str
    depart_min: int
    origin: str
    destination: str
    line: int = 0


@dataclass
class Solution:
    """The three files' lines; moves in file order."""

    assignments: list[AssignmentLine] = field(default_factory=list)
    orders: list[OrderLine] = field(default_factory=list)
    moves: list[Move] = field(default_factory=list)


def as_written(solution: Solution) -> Solution:
    """The solution as its files hold it: each courier's moves in one block (in the order of
    their first move, each block in time order), every line numbered as in its file."""
    first_seen = {m.courier: i for i, m in reversed(list(enumerate(solution.moves)))}
    moves = sorted(solution.moves, key=lambda m: first_seen[m.courier])  # stable: keeps order
    return Solution(
        [replace(a, line=n) for n, a in enumerate(solution.assignments, start=2)],
        [replace(o, line=n) for n, o in enumerate(solution.orders, start=2)],
        [replace(m, line=n) for n, m in enumerate(moves, start=2)],
    )


def write_solution(solution: Solution, folder: Path) -> None:
    """Write the three files into ``folder`` (created if missing), as ``as_written`` orders."""
    folder.mkdir(parents=True, exist_ok=True)
    solution = as_written(solution)
    lines = ["assignment_time pickup_time courier orders"]
    lines += [
        f"{a.assigned_min} {a.pickup_min} {a.courier} {' '.join(a.orders)}"
        for a in solution.assignments
    ]
    (folder / ASSIGNMENTS).write_text("\n".join(lines) + "\n")
    lines = ["order placement_time ready_time pickup_time dropoff_time courier"]
    lines += [
        f"{o.order} {o.placed_min} {o.ready_min} {o.pickup_min} {o.dropoff_min} {o.courier}"
        for o in solution.orders
    ]
    (folder / ORDERS).write_text("\n".join(lines) + "\n")
    lines = ["courier departure_time origin destination"]
    lines += [f"{m.courier} {m.depart_min} {m.origin} {m.destination}" for m in solution.moves]
    (folder / COURIERS).write_text("\n".join(lines) + "\n")


def _lines(path: Path, min_fields: int, max_fields: int | None) -> Iterator[tuple[int, list[str]]]:
    if not path.is_file():
        raise InvalidInput(f"{path}: missing solution file", field=path.name)
    text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not text:
        raise InvalidInput(f"{path}:1: missing header line", field=path.name)
    for number, line in enumerate(text[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < min_fields or (max_fields is not None and len(fields) > max_fields):
            raise InvalidInput(f"{path}:{number}: {len(fields)} fields", field=path.name)
        yield number, fields


def _minute(path: Path, number: int, text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{path}:{number}: {text!r} is not a time", field=path.name) from None
    if not value.is_integer():
        raise InvalidInput(f"{path}:{number}: {text!r} is not a whole minute", field=path.name)
    return int(value)


def read_solution(folder: Path) -> Solution:
    """Read the three files of ``folder``; ``InvalidInput`` (file and line) when malformed."""
    solution = Solution()
    path = folder / ASSIGNMENTS
    for n, f in _lines(path, 4, None):
        solution.assignments.append(
            AssignmentLine(_minute(path, n, f[0]), _minute(path, n, f[1]), f[2], tuple(f[3:]), n)
        )
    path = folder / ORDERS
    for n, line in enumerate(path.read_text().splitlines()[1:] if path.is_file() else [], 2):
        if "\t" in line:
            raise InvalidInput(f"{path}:{n}: tabs are not accepted, single spaces only")
    for n, f in _lines(path, 6, 6):
        placed, ready, pickup, dropoff = (_minute(path, n, t) for t in f[1:5])
        solution.orders.append(OrderLine(f[0], placed, ready, pickup, dropoff, f[5], n))
    path = folder / COURIERS
    for n, f in _lines(path, 4, 4):
        solution.moves.append(Move(f[0], _minute(path, n, f[1]), f[2], f[3], n))
    return solution
