import json
import time
from typing import Any

import httpx
import pytest

from ontheway.auth import Role, issue_token
from ontheway.regions import Catalog
from tests.e2e.conftest import Server, start_server, stop_server


def error_of(resp: httpx.Response) -> dict[str, object]:
    body = resp.json()
    assert set(body["error"]) == {"code", "message", "field"}
    return body["error"]  # type: ignore[no-any-return]


def test_health_needs_no_token_and_reports_every_dependency(server: Server) -> None:
    resp = httpx.get(f"{server.base_url}/health")
    assert resp.status_code == 200
    deps = resp.json()["dependencies"]
    assert set(deps) == {
        "postgres:americas",
        "postgres:europe",
        "postgres:asia_pacific",
        "redis",
        "falkordb",
    }
    assert all(dep["ok"] for dep in deps.values())


def test_a_call_without_a_token_is_401_with_the_error_body(server: Server) -> None:
    resp = httpx.get(f"{server.base_url}/api/regions")
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "missing_token"
    assert resp.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwdw==", "Bearer a.b.c"]
)
def test_a_malformed_token_is_401(server: Server, header: str) -> None:
    resp = httpx.get(f"{server.base_url}/api/regions", headers={"Authorization": header})
    assert resp.status_code == 401
    assert error_of(resp)["code"] in {"invalid_token", "missing_token"}


def test_an_expired_token_is_401(server: Server) -> None:
    token = issue_token(server.settings.jwt_key(), Role.OPS, "ops_1", ttl_s=5, now=time.time() - 60)
    resp = httpx.get(f"{server.base_url}/api/regions", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert error_of(resp)["code"] == "token_expired"


def test_a_token_signed_with_another_secret_is_401(server: Server) -> None:
    token = issue_token("another-secret-of-32-characters!", Role.OPS, "ops_1")
    resp = httpx.get(f"{server.base_url}/api/regions", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401


def test_a_customer_may_not_see_the_ops_view(server: Server) -> None:
    resp = httpx.get(
        f"{server.base_url}/api/ops/dependencies", headers=server.auth(Role.CUSTOMER, "user_456")
    )
    assert resp.status_code == 403
    assert error_of(resp)["code"] == "forbidden"


def test_ops_see_each_dependency_with_its_version(server: Server) -> None:
    resp = httpx.get(
        f"{server.base_url}/api/ops/dependencies", headers=server.auth(Role.OPS, "ops_1")
    )
    assert resp.status_code == 200
    versions = {dep["name"]: dep["version"] for dep in resp.json()}
    assert versions["redis"].startswith("Redis 8.")
    assert versions["falkordb"].startswith("FalkorDB ")
    assert "PostGIS" in versions["postgres:americas"]


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_the_region_catalog(server: Server, role: Role) -> None:
    resp = httpx.get(f"{server.base_url}/api/regions", headers=server.auth(role, "someone_1"))
    assert resp.status_code == 200
    regions = {r["region"]: r for r in resp.json()}
    assert len(regions) == 100
    assert set(regions["sf"]) == {
        "region",
        "name",
        "country",
        "center",
        "bbox",
        "timezone",
        "shard",
    }


def test_an_unknown_path_is_404_with_the_error_body(server: Server) -> None:
    resp = httpx.get(f"{server.base_url}/api/nowhere", headers=server.auth(Role.OPS, "ops_1"))
    assert resp.status_code == 404
    assert error_of(resp)["code"] == "not_found"


def test_the_openapi_description_is_served(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/docs").status_code == 200
    assert "/health" in httpx.get(f"{server.base_url}/openapi.json").json()["paths"]


def unhealthy_quickly(base: str) -> dict[str, Any]:
    """``/health`` of a server with a dependency down: 503 with the error body, within 5 s."""
    started = time.monotonic()
    resp = httpx.get(f"{base}/health", timeout=10)
    assert time.monotonic() - started < 5
    assert resp.status_code == 503
    assert error_of(resp)["code"] == "dependency_unavailable"
    body: dict[str, Any] = resp.json()
    return body


def test_a_dependency_that_is_down_gives_503_quickly_not_a_hang(server: Server) -> None:
    from ontheway.bench.common import free_port

    dead = f"redis://127.0.0.1:{free_port()}/0"
    base, proc = start_server(
        {
            "ONTHEWAY_REDIS_URL": dead,
            "ONTHEWAY_FALKORDB_URL": dead,
            "ONTHEWAY_DEPENDENCY_TIMEOUT_S": "1",
        },
        expect_status=503,
    )
    try:
        body = unhealthy_quickly(base)
        assert body["dependencies"]["redis"]["ok"] is False
        assert body["dependencies"]["postgres:americas"]["ok"] is True
        ops = httpx.get(f"{base}/api/ops/dependencies", headers=server.auth(Role.OPS, "o_1"))
        assert ops.status_code == 200
        assert {d["name"]: d["ok"] for d in ops.json()}["falkordb"] is False
    finally:
        stop_server(proc)


def test_a_shard_that_is_down_gives_503_quickly_and_is_named(
    server: Server, catalog: Catalog
) -> None:
    from ontheway.bench.common import free_port

    dead = f"postgresql://ontheway@127.0.0.1:{free_port()}/ontheway_europe"
    dsns = {**server.settings.shard_dsns, "europe": dead}
    base, proc = start_server(
        {"ONTHEWAY_SHARD_DSNS": json.dumps(dsns), "ONTHEWAY_DEPENDENCY_TIMEOUT_S": "1"},
        expect_status=503,
    )
    try:
        body = unhealthy_quickly(base)
        assert "postgres:europe" in str(body["error"]["message"])
        assert body["dependencies"]["postgres:europe"]["ok"] is False
        assert body["dependencies"]["postgres:americas"]["ok"] is True
        # A call that reads the shard that is down: an order of a European region.
        region = next(r.region for r in catalog if r.shard == "europe")
        order_id = f"ord_{region}_0000000000000000aa"
        started = time.monotonic()
        order = httpx.get(
            f"{base}/api/orders/{order_id}", headers=server.auth(Role.OPS, "o_1"), timeout=10
        )
        assert time.monotonic() - started < 5
        assert order.status_code == 503, order.text
        assert error_of(order)["code"] == "dependency_unavailable"
        assert "europe" in str(error_of(order)["message"])
    finally:
        stop_server(proc)


def test_the_api_serves_from_several_worker_processes(server: Server) -> None:
    base, proc = start_server(args=("--workers", "2"))
    try:
        answers = {httpx.get(f"{base}/api/regions",
                             headers=server.auth(Role.OPS, "ops_1")).status_code
                   for _ in range(10)}  # fmt: skip
        assert answers == {200}
    finally:
        stop_server(proc)
    assert proc.returncode is not None
