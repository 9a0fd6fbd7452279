"""Bearer tokens (JWT, HS256): who is calling and in which role. Pure: no I/O."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from enum import StrEnum

import jwt

from ontheway.errors import Forbidden, InvalidInput, Unauthenticated

ALGORITHM = "HS256"
_SUBJECT = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


class Role(StrEnum):
    """The four kinds of caller of API.md."""

    CUSTOMER = "customer"
    DRIVER = "driver"
    RESTAURANT = "restaurant"
    OPS = "ops"


@dataclass(frozen=True)
class Principal:
    """The caller: subject id, role and, for ops, the regions it may act on (None = all)."""

    sub: str
    role: Role
    regions: frozenset[str] | None = None

    def require_role(self, *roles: Role) -> None:
        """Refuse callers whose role is not among ``roles``."""
        if self.role not in roles:
            allowed = ", ".join(r.value for r in roles)
            raise Forbidden(f"this needs the role {allowed}; the token's role is {self.role}")

    def require_region(self, region: str) -> None:
        """Refuse ops callers that are limited to other regions."""
        if self.regions is not None and region not in self.regions:
            raise Forbidden(f"this token does not cover the region {region!r}", field="region")


def issue_token(
    key: str,
    role: Role,
    sub: str,
    *,
    regions: list[str] | None = None,
    ttl_s: int = 3600,
    now: float | None = None,
) -> str:
    """Sign a token for ``sub`` in ``role``, valid for ``ttl_s`` seconds."""
    if not _SUBJECT.match(sub):
        raise InvalidInput(
            "the subject id must be 1-64 characters of A-Z a-z 0-9 _ . : -", field="sub"
        )
    if ttl_s <= 0:
        raise InvalidInput("the token's lifetime must be positive", field="ttl")
    if regions is not None and role is not Role.OPS:
        raise InvalidInput("only ops tokens are limited to regions", field="regions")
    issued = int(now if now is not None else time.time())
    claims: dict[str, object] = {
        "sub": sub,
        "role": role.value,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if regions is not None:
        claims["regions"] = sorted(set(regions))
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def decode_token(key: str, token: str) -> Principal:
    """Verify a token and return its principal; any fault is ``Unauthenticated``."""
    try:
        claims = jwt.decode(
            token, key, algorithms=[ALGORITHM], options={"require": ["sub", "role", "exp"]}
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated("the token has expired", code="token_expired") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated(f"the token is invalid: {exc}", code="invalid_token") from None
    try:
        role = Role(claims["role"])
    except ValueError:
        raise Unauthenticated(
            f"unknown role {claims['role']!r} in the token", code="invalid_token"
        ) from None
    sub = claims["sub"]
    if not isinstance(sub, str) or not _SUBJECT.match(sub):
        raise Unauthenticated("the token's subject is malformed", code="invalid_token")
    regions = claims.get("regions")
    if regions is not None and not (
        isinstance(regions, list) and all(isinstance(r, str) for r in regions)
    ):
        raise Unauthenticated("the token's regions must be a list of ids", code="invalid_token")
    return Principal(sub, role, frozenset(regions) if regions is not None else None)
