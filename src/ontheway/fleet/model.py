"""Drivers' live state, as values: location fixes, statuses, vehicles, candidates. Pure: no I/O.

A location fix is the seed's ``{driver_id, lat, lng, timestamp}`` with ``timestamp`` in Unix
seconds (UTC). Validation happens here once, for every path in (HTTP, batch, WebSocket), so the
Redis adapter never sees nonsense.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ontheway.errors import Forbidden, InvalidInput, NotFound

METRES_PER_MILE = 1609.344
DRIVER_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"  # no braces: ids sit inside Redis key names


class VehicleType(StrEnum):
    """What a driver delivers with; the capacity per type is a setting."""

    BICYCLE = "bicycle"
    SCOOTER = "scooter"
    CAR = "car"


class DriverStatus(StrEnum):
    """A driver's status; an expired heartbeat reads as ``offline``."""

    AVAILABLE = "available"
    BUSY = "busy"
    OFFLINE = "offline"


class Outcome(IntEnum):
    """What became of one fix; the values are the ingest script's replies."""

    APPLIED = 0
    STALE = 1  # older than (or as old as) the last fix stored: ignored
    NOT_HERE = 2  # the driver is not registered in this region (moved, or unknown)


class UnknownDriver(NotFound):
    """No driver with this id is registered."""

    code = "unknown_driver"


class StaleTimestamp(InvalidInput):
    """A fix too far in the future or too long ago to describe the driver now."""

    code = "invalid_timestamp"


Latitude = Annotated[float, Field(ge=-90, le=90, strict=True, allow_inf_nan=False)]
Longitude = Annotated[float, Field(ge=-180, le=180, strict=True, allow_inf_nan=False)]


class LocationIn(BaseModel):
    """One location fix as a client sends it (numbers must be JSON numbers, not strings)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    driver_id: str = Field(pattern=DRIVER_ID_PATTERN)
    lat: Latitude
    lng: Longitude
    timestamp: float = Field(strict=True, allow_inf_nan=False, description="Unix seconds, UTC")


class _FixMessage(LocationIn):
    """A socket message of one fix, as the fast path reads it (one with ``type`` or ``updates``
    is not)."""

    seq: Any = None
    type: None = None
    updates: None = None


class _FixesMessage(BaseModel):
    """A socket message of several fixes, as the fast path reads it."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    updates: list[LocationIn]
    seq: Any = None
    type: None = None


@dataclass(frozen=True, slots=True)
class LocationMessage:
    """A socket message whose every fix is valid: the fixes, whether it was a batch, its
    ``seq``."""

    fixes: list[LocationIn]
    batch: bool
    seq: Any


def read_location_message(text: str) -> LocationMessage | None:
    """The fast path of the driver socket: parse and validate a message of fixes from its text
    in one pass (pydantic's JSON parser, no intermediate dicts). None for anything else (a bad
    entry, an answer to an offer, malformed JSON): the caller then takes the slow path, which
    names each problem. Both accept exactly the same valid messages (JSON parsing and strict
    numbers agree; tested)."""
    try:
        if "updates" in text:
            many = _FixesMessage.model_validate_json(text)
            return LocationMessage(many.updates, True, many.seq)
        one = _FixMessage.model_validate_json(text)
    except ValidationError:
        return None
    return LocationMessage([one], False, one.seq)


class LocationBatchIn(BaseModel):
    """The batch endpoint's body: entries are validated one by one, so bad ones are listed."""

    updates: list[Any] = Field(max_length=1000)


@dataclass(frozen=True, slots=True)
class Fix:
    """A validated fix, placed in its region."""

    driver_id: str
    region: str
    lat: float
    lng: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class Candidate:
    """An available driver with spare capacity near a point, with the inputs of scoring."""

    driver_id: str
    distance_m: float
    lat: float
    lng: float
    vehicle_type: VehicleType
    active_orders: int
    rating: float | None
    acceptance_rate: float | None

    @property
    def distance_mi(self) -> float:
        return self.distance_m / METRES_PER_MILE


def parse_location(raw: object) -> LocationIn:
    """Validate one fix, naming the first bad field; raises ``InvalidInput``."""
    if not isinstance(raw, dict):
        raise InvalidInput("a location must be a JSON object {driver_id, lat, lng, timestamp}")
    try:
        return LocationIn.model_validate(raw)
    except ValidationError as exc:
        raise invalid_input_from(exc) from None


def invalid_input_from(exc: ValidationError) -> InvalidInput:
    """Turn pydantic's errors into one ``InvalidInput`` naming the first field at fault."""
    errors = exc.errors()
    first = errors[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in errors[:4]
    )
    return InvalidInput(message, field=field)


def check_timestamp(timestamp: float, now: float, max_skew_s: float, max_age_s: float) -> None:
    """Refuse fixes from the future (beyond clock skew) or older than ``max_age_s``."""
    if not math.isfinite(timestamp):
        raise StaleTimestamp("the timestamp must be a finite number", field="timestamp")
    if timestamp > now + max_skew_s:
        raise StaleTimestamp(
            f"the timestamp lies {timestamp - now:.0f} s in the future "
            f"(at most {max_skew_s:.0f} s of clock skew is allowed)",
            field="timestamp",
        )
    if timestamp < now - max_age_s:
        raise StaleTimestamp(
            f"the fix is {now - timestamp:.0f} s old (at most {max_age_s:.0f} s is accepted)",
            field="timestamp",
        )


def check_reporter(role: str, sub: str, driver_id: str) -> None:
    """A driver reports only its own position; ops (a gateway, the simulator) any driver's."""
    if role == "driver" and sub != driver_id:
        raise Forbidden(
            f"a driver may only report its own location, not {driver_id!r}", field="driver_id"
        )
    if role not in ("driver", "ops"):
        raise Forbidden(f"the role {role} may not report locations")
