"""Ids that carry their region (``ord_sf_<suffix>``), so any order or restaurant can be
routed to its shard without a lookup. Region ids may contain underscores; suffixes never do."""

from __future__ import annotations

import re
import secrets
import time

from ontheway.errors import NotFound

_NAMES = {"ord": "order", "rest": "restaurant", "item": "item", "pay": "payment"}
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base 32, lower case
_ID = re.compile(r"^(ord|rest|item|pay)_([a-z][a-z0-9_]{0,39})_([0-9a-z]{4,32})$")


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
