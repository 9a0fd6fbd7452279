"""Reading and validating one MDRP instance folder (five tab-separated files, one header line).

Every problem is an ``InvalidInput`` naming the file and the line: a missing file, a wrong
header, a wrong number of fields, a number that is not one, a duplicate id, an order naming an
unknown restaurant, an order ready before it is placed, a courier whose off time precedes its
on time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ontheway.dispatch.policies import EuclideanTravel, Point, Service
from ontheway.errors import InvalidInput

NO_LIMIT = 1_000_000
HEADERS = {
    "restaurants.txt": ("restaurant", "x", "y"),
    "orders.txt": ("order", "x", "y", "placement_time", "restaurant", "ready_time"),
    "couriers.txt": ("courier", "x", "y", "on_time", "off_time"),
    "instance_parameters.txt": (
        "meters_per_minute",
        "pickup service minutes",
        "dropoff service minutes",
        "target click-to-door",
        "maximum click-to-door",
        "pay per order",
        "guaranteed pay per hour",
    ),
}


@dataclass(frozen=True)
class Order:
    """An order of the day: the diner's point, when it is placed, where, when it is ready."""

    id: str
    xy: Point
    placed_min: int
    restaurant: str
    ready_min: int


@dataclass(frozen=True)
class Courier:
    """A courier's shift: where it starts, when it comes on and goes off duty."""

    id: str
    xy: Point
    on_min: int
    off_min: int


@dataclass(frozen=True)
class Parameters:
    """The instance's travel speed, service minutes and pay."""

    meters_per_minute: float
    pickup_service_min: int
    dropoff_service_min: int
    target_click_to_door_min: int
    max_click_to_door_min: int
    pay_per_order: float
    pay_per_hour: float

    def service(self) -> Service:
        """Pickup and drop-off service minutes as a policy sees them."""
        return Service(self.pickup_service_min, self.dropoff_service_min)

    def travel(self) -> EuclideanTravel:
        """The instance's travel-time function."""
        return EuclideanTravel(self.meters_per_minute)

    def guaranteed_orders(self, courier: Courier) -> int:
        """Orders a courier's guaranteed pay for its shift covers (each further one is paid)."""
        if self.pay_per_order <= 0:
            return NO_LIMIT
        shift_pay = self.pay_per_hour * (courier.off_min - courier.on_min) / 60
        return math.floor(shift_pay / self.pay_per_order)


@dataclass(frozen=True)
class Instance:
    """One instance: its name (the folder's), restaurants, orders, couriers and parameters."""

    name: str
    restaurants: dict[str, Point]
    orders: dict[str, Order]
    couriers: dict[str, Courier]
    params: Parameters


def _rows(path: Path) -> Iterator[tuple[str, list[str]]]:
    """(``file:line``, fields) of every data line, after checking the header."""
    if not path.is_file():
        raise InvalidInput(f"{path}: missing instance file", field=path.name)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot be read ({exc})", field=path.name) from None
    header = HEADERS[path.name]
    if not lines or tuple(f.strip() for f in lines[0].split("\t")) != header:
        raise InvalidInput(f"{path}:1: header must be {' | '.join(header)}", field=path.name)
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split("\t")]
        if len(fields) != len(header):
            raise InvalidInput(
                f"{path}:{number}: {len(fields)} fields, expected {len(header)}", field=path.name
            )
        yield f"{path}:{number}", fields


def _float(where: str, name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"{where}: {name} {text!r} is not a number", field=name) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{where}: {name} {text!r} is not a finite number", field=name)
    return value


def _int(where: str, name: str, text: str) -> int:
    value = _float(where, name, text)
    if not value.is_integer():
        raise InvalidInput(f"{where}: {name} {text!r} is not a whole number", field=name)
    return int(value)


def _xy(where: str, x: str, y: str) -> Point:
    return (_float(where, "x", x), _float(where, "y", y))


def _unique(where: str, seen: Mapping[str, object], key: str) -> str:
    if key in seen:
        raise InvalidInput(f"{where}: duplicate id {key!r}", field=key)
    return key


def load_instance(folder: Path) -> Instance:
    """Read and validate the instance in ``folder``."""
    if not folder.is_dir():
        raise InvalidInput(f"{folder}: not an instance folder", field="instance")
    restaurants: dict[str, Point] = {}
    for where, (rid, x, y) in _rows(folder / "restaurants.txt"):
        restaurants[_unique(where, restaurants, rid)] = _xy(where, x, y)
    orders: dict[str, Order] = {}
    for where, (oid, x, y, placed, rid, ready) in _rows(folder / "orders.txt"):
        if rid not in restaurants:
            raise InvalidInput(f"{where}: order {oid} names unknown restaurant {rid!r}", field=rid)
        order = Order(
            _unique(where, orders, oid),
            _xy(where, x, y),
            _int(where, "placement_time", placed),
            rid,
            _int(where, "ready_time", ready),
        )
        if order.ready_min < order.placed_min:
            raise InvalidInput(f"{where}: order {oid} is ready before it is placed", field=oid)
        orders[oid] = order
    couriers: dict[str, Courier] = {}
    for where, (cid, x, y, on, off) in _rows(folder / "couriers.txt"):
        courier = Courier(
            _unique(where, couriers, cid),
            _xy(where, x, y),
            _int(where, "on_time", on),
            _int(where, "off_time", off),
        )
        if courier.off_min < courier.on_min:
            raise InvalidInput(
                f"{where}: courier {cid} goes off duty ({off}) before it comes on ({on})", field=cid
            )
        couriers[cid] = courier
    params = [fields for _, fields in _rows(folder / "instance_parameters.txt")]
    where = f"{folder / 'instance_parameters.txt'}:2"
    if len(params) != 1:
        raise InvalidInput(f"{where}: expected exactly one line of parameters", field="parameters")
    mpm, pickup, dropoff, target, most, per_order, per_hour = params[0]
    parameters = Parameters(
        _float(where, "meters_per_minute", mpm),
        _int(where, "pickup service minutes", pickup),
        _int(where, "dropoff service minutes", dropoff),
        _int(where, "target click-to-door", target),
        _int(where, "maximum click-to-door", most),
        _float(where, "pay per order", per_order),
        _float(where, "guaranteed pay per hour", per_hour),
    )
    if (
        parameters.meters_per_minute <= 0
        or min(parameters.pickup_service_min, parameters.dropoff_service_min) < 0
    ):
        raise InvalidInput(f"{where}: speed must be positive, service minutes not negative")
    return Instance(folder.name, restaurants, orders, couriers, parameters)
