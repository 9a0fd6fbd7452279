import asyncio
import signal
import sys
from typing import Any

import httpx

from ontheway.auth import Role
from ontheway.connections import Connections
from ontheway.orders.service import OrderService
from tests.e2e.conftest import Server
from tests.helpers import order_for


def test_health_shows_the_relay_lag_of_every_shard(server: Server) -> None:
    relay = httpx.get(f"{server.base_url}/health").json()["relay"]
    assert set(relay) == {"americas", "europe", "asia_pacific"}
    for lag in relay.values():
        assert lag["events"] >= 0 and lag["seconds"] >= 0


def test_metrics_are_for_ops_and_carry_the_relay_lag(server: Server) -> None:
    url = f"{server.base_url}/metrics"
    assert httpx.get(url, headers=server.auth(Role.CUSTOMER, "user_1")).status_code == 403
    resp = httpx.get(url, headers=server.auth(Role.OPS, "ops_1"))
    assert resp.status_code == 200
    assert 'ontheway_relay_lag_events{shard="americas"}' in resp.text
    assert 'ontheway_dependency_up{dependency="redis"} 1.0' in resp.text


async def test_the_relay_command_publishes_new_orders_and_stops_cleanly_on_sigterm(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ontheway", "relay",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
        redis = conns.require_redis()
        found = False
        for _ in range(300):
            entries = await redis.xrevrange("events:order_events", count=2000)
            found = any(order["order_id"].encode() in fields[b"event"] for _, fields in entries)
            if found:
                break
            await asyncio.sleep(0.1)
        assert found, "the order's event was not published"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
        stderr = (await proc.stderr.read()).decode() if proc.stderr else ""
    assert code == 0, stderr
    assert "Traceback" not in stderr
