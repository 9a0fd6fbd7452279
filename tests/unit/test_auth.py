import time

import jwt
import pytest

from ontheway.auth import Principal, Role, decode_token, issue_token
from ontheway.errors import Forbidden, InvalidInput, Unauthenticated

KEY = "k" * 32


def test_a_token_carries_its_subject_role_and_regions() -> None:
    token = issue_token(KEY, Role.OPS, "ops_1", regions=["sf", "nyc"])
    assert decode_token(KEY, token) == Principal("ops_1", Role.OPS, frozenset({"sf", "nyc"}))


def test_a_token_without_regions_covers_every_region() -> None:
    principal = decode_token(KEY, issue_token(KEY, Role.OPS, "ops_1"))
    principal.require_region("london")


def test_an_ops_token_limited_to_regions_is_refused_elsewhere() -> None:
    principal = decode_token(KEY, issue_token(KEY, Role.OPS, "ops_1", regions=["sf"]))
    with pytest.raises(Forbidden):
        principal.require_region("london")


def test_an_expired_token_is_refused() -> None:
    token = issue_token(KEY, Role.CUSTOMER, "user_1", ttl_s=10, now=time.time() - 60)
    with pytest.raises(Unauthenticated) as info:
        decode_token(KEY, token)
    assert info.value.code == "token_expired"


def test_a_token_signed_with_another_key_is_refused() -> None:
    token = issue_token("x" * 32, Role.CUSTOMER, "user_1")
    with pytest.raises(Unauthenticated, match="invalid"):
        decode_token(KEY, token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "Bearer x"])
def test_a_malformed_token_is_refused(garbage: str) -> None:
    with pytest.raises(Unauthenticated):
        decode_token(KEY, garbage)


def test_a_token_with_an_unknown_role_is_refused() -> None:
    token = jwt.encode({"sub": "x", "role": "admin", "exp": time.time() + 60}, KEY)
    with pytest.raises(Unauthenticated, match="unknown role"):
        decode_token(KEY, token)


def test_a_token_without_expiry_is_refused() -> None:
    token = jwt.encode({"sub": "x", "role": "ops"}, KEY)
    with pytest.raises(Unauthenticated):
        decode_token(KEY, token)


def test_regions_are_only_for_ops_tokens() -> None:
    with pytest.raises(InvalidInput):
        issue_token(KEY, Role.DRIVER, "drv_1", regions=["sf"])


@pytest.mark.parametrize("sub", ["", "has space", "x" * 65, "semi;colon"])
def test_a_malformed_subject_is_refused(sub: str) -> None:
    with pytest.raises(InvalidInput):
        issue_token(KEY, Role.CUSTOMER, sub)


def test_a_role_outside_the_allowed_ones_is_forbidden() -> None:
    with pytest.raises(Forbidden):
        Principal("user_1", Role.CUSTOMER).require_role(Role.OPS)
