"""Ids that carry their region (``ord_sf_<suffix>``), so any order or restaurant can be
routed to its shard without a lookup. Region ids may contain underscores; suffixes never do."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from ontheway.errors import NotFound

_NAMES = {"ord": "order", "rest": "restaurant", "item": "item", "pay": "payment"}
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base 32, lower case
_ID = re.compile(r"^(ord|rest|item|pay)_([a-z][a-z0-9_]{0,39})_([0-9a-z]{4,32})$")


# An order's id is made after its ``created_at`` is taken (its estimate runs in between: at most
# seconds), so the order was created within this span before the time its id carries.
CREATED_BEFORE_ID = timedelta(hours=1)
CREATED_AFTER_ID = timedelta(minutes=1)  # none: a margin
_ANY_TIME = (datetime(1, 1, 2, tzinfo=UTC), datetime(9999, 12, 30, tzinfo=UTC))


def _suffix() -> str:
    """Time-ordered (milliseconds) then random: 10 + 8 base-32 characters."""
    value = (int(time.time() * 1000) << 40) | int.from_bytes(secrets.token_bytes(5), "big")
    return "".join(_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(18)))


def new_id(kind: str, region: str) -> str:
    """A fresh id of ``kind`` (ord, rest, item, pay) in ``region``."""
    return f"{kind}_{region}_{_suffix()}"


def region_of(identifier: str, kind: str) -> str:
    """The region an id carries; a malformed id is NotFound (it cannot name anything)."""
    match = _ID.match(identifier)
    if not match or match.group(1) != kind:
        name = _NAMES.get(kind, kind)
        raise NotFound(f"no {name} {identifier!r}", field=f"{name}_id", code=f"unknown_{name}")
    return match.group(2)


def id_time(identifier: str) -> datetime | None:
    """The time (to the millisecond) an id carries; None for an id without one (suffixes
    other than the 18 characters ``new_id`` makes)."""
    match = _ID.match(identifier)
    if not match or len(suffix := match.group(3)) != 18:
        return None
    value = 0
    for char in suffix:
        digit = _ALPHABET.find(char)
        if digit < 0:
            return None
        value = value * 32 + digit
    return datetime.fromtimestamp((value >> 40) / 1000, UTC)


def created_span(order_id: str) -> tuple[datetime, datetime]:
    """When the order of this id was created, as (earliest, latest): a lookup by id that also
    bounds ``created_at`` (the partition key of ``orders`` and ``order_events``) reads one
    monthly partition instead of probing every one. Any time for an id that carries none."""
    made = id_time(order_id)
    if made is None:
        return _ANY_TIME
    return made - CREATED_BEFORE_ID, made + CREATED_AFTER_ID


def created_span_of(order_ids: Iterable[str]) -> tuple[datetime, datetime]:
    """The span in which all these orders were created (``created_span`` of each, joined)."""
    spans = [created_span(order_id) for order_id in order_ids] or [_ANY_TIME]
    return min(lo for lo, _ in spans), max(hi for _, hi in spans)
