import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from ontheway.auth import Role, issue_token
from ontheway.bench.common import free_port
from ontheway.connections import Connections
from ontheway.events.relay import cursor_name, start_at_end
from ontheway.orders.lifecycle import EventType
from ontheway.orders.service import OrderService
from ontheway.settings import Settings
from tests.e2e.conftest import Server
from tests.helpers import order_body, order_for


async def test_health_shows_the_relay_lag_of_every_shard(
    server: Server, conns: Connections
) -> None:
    stream = server.settings.event_stream
    for shard in conns.shards:  # the relay has run on every shard (else: None, see below)
        await start_at_end(conns, shard, cursor_name(stream, shard))
    async with httpx.AsyncClient() as client:
        relay = (await client.get(f"{server.base_url}/health")).json()["relay"]
    assert set(relay) == {"americas", "europe", "asia_pacific"}
    for lag in relay.values():
        assert lag["events"] >= 0 and lag["seconds"] >= 0


async def test_metrics_are_for_ops_and_carry_the_relay_lag(
    server: Server, conns: Connections
) -> None:
    await start_at_end(conns, "americas", cursor_name(server.settings.event_stream, "americas"))
    url = f"{server.base_url}/metrics"
    async with httpx.AsyncClient() as client:
        refused = await client.get(url, headers=server.auth(Role.CUSTOMER, "user_1"))
        resp = await client.get(url, headers=server.auth(Role.OPS, "ops_1"))
    assert refused.status_code == 403
    assert resp.status_code == 200
    assert 'ontheway_relay_lag_events{shard="americas"}' in resp.text
    assert 'ontheway_dependency_up{dependency="redis"} 1.0' in resp.text


@pytest.fixture
async def stream_env(conns: Connections, uid: str) -> AsyncIterator[dict[str, str]]:
    """An event stream of the test's own for the processes it starts, relayed from now on."""
    stream = f"test_{uid}"
    for shard in conns.shards:
        await start_at_end(conns, shard, cursor_name(stream, shard))
    yield {**os.environ, "ONTHEWAY_EVENT_STREAM": stream}
    await conns.require_redis().delete(f"events:{stream}", f"events:{stream}.dead")


async def payout_of(conns: Connections, order_id: str) -> Any:
    """The driver's payout for an order, waiting up to 30 s for the payments worker."""
    for _ in range(300):
        async with conns.shard_connection("americas") as conn:
            cur = await conn.execute(
                "SELECT payout FROM driver_payouts WHERE order_id = %s", (order_id,)
            )
            payout = await cur.fetchone()
        if payout:
            return payout["payout"]
        await asyncio.sleep(0.1)
    return None


async def start(
    env: dict[str, str], *args: str, log: IO[bytes] | None = None
) -> asyncio.subprocess.Process:
    """``python -m ontheway *args``; its output in pipes read after it ends, or in ``log``
    for a long run (a pipe nobody reads blocks its writers once full: 64 KB)."""
    out = asyncio.subprocess.PIPE if log is None else log
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ontheway", *args, env=env, stdout=out,
        stderr=asyncio.subprocess.PIPE if log is None else asyncio.subprocess.STDOUT,
    )  # fmt: skip


async def stop(*procs: asyncio.subprocess.Process) -> list[int]:
    """SIGTERM each process and wait for it; returns the exit codes."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    return [await asyncio.wait_for(proc.wait(), 30) for proc in procs]


async def test_the_relay_command_publishes_new_orders_and_stops_cleanly_on_sigterm(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    stream_env: dict[str, str],
) -> None:
    relay = await start(stream_env, "relay")
    try:
        order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][0]))
        stream = f"events:{stream_env['ONTHEWAY_EVENT_STREAM']}"
        found = False
        for _ in range(300):
            entries = await conns.require_redis().xrange(stream)
            found = any(order["order_id"].encode() in fields[b"event"] for _, fields in entries)
            if found:
                break
            await asyncio.sleep(0.1)
        assert found, "the order's event was not published"
    finally:
        [code] = await stop(relay)
    stderr = (await relay.stderr.read()).decode() if relay.stderr else ""
    assert code == 0, stderr
    assert "Traceback" not in stderr


async def test_a_worker_process_pays_for_delivered_orders_and_stops_on_sigterm(
    conns: Connections,
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
    stream_env: dict[str, str],
) -> None:
    relay = await start(stream_env, "relay")
    worker = await start(stream_env, "worker", "--consumer", "payments")
    try:
        order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][1]))
        oid, driver = order["order_id"], sf["drivers"][1]["driver_id"]
        await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
        for step in (
            EventType.DRIVER_ARRIVED_RESTAURANT,
            EventType.ORDER_PICKED_UP,
            EventType.ORDER_DELIVERED,
        ):
            await orders.transition(oid, step, driver)
        assert await payout_of(conns, oid), "the payments worker did not pay the driver"
    finally:
        codes = await stop(worker, relay)
    out = (await worker.stdout.read()).decode() if worker.stdout else ""
    assert codes == [0, 0]
    assert "handled" in out


def test_an_unknown_consumer_is_refused_with_a_message() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ontheway", "worker", "--consumer", "tarot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "tarot" in result.stderr and "Traceback" not in result.stderr


async def test_run_dispatches_an_order_and_carries_it_to_the_drivers_payout(
    conns: Connections,
    sf: dict[str, Any],
    uid: str,
    stream_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
) -> None:
    port = free_port()
    # Most seeded restaurants lie off the small downtown map: dispatch by straight line here.
    env = {**stream_env, "ONTHEWAY_DISPATCH_STRAIGHT_LINE_KPH": "20",
           "ONTHEWAY_DISPATCH_AUTO_ACCEPT": "true"}  # fmt: skip
    log = (tmp_path / "run.log").open("wb")
    everything = await start(env, "run", "--port", str(port), log=log)
    base = f"http://127.0.0.1:{port}"
    key = settings.jwt_key()

    def auth(role: Role, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {issue_token(key, role, sub)}"}

    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(300):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get("/health")).status_code == 200:
                        break
                await asyncio.sleep(0.1)
            restaurant, nearby = sf["restaurants"][3], sf["drivers"][3]["driver_id"]
            moved = await http.post(
                "/api/driver/location", headers=auth(Role.DRIVER, nearby),
                json={"driver_id": nearby, "lat": restaurant["lat"], "lng": restaurant["lng"],
                      "timestamp": time.time()})  # fmt: skip
            assert moved.status_code == 202, moved.text
            placed = await http.post(
                "/api/orders",
                json=order_body(restaurant),
                headers=auth(Role.CUSTOMER, f"user_{uid}"),
            )
            assert placed.status_code == 201, placed.text
            oid = placed.json()["order_id"]
            driver = None
            # The relay publishes ORDER_PLACED, the dispatcher assigns: a minute at most, as
            # the run's processes may still be starting on a loaded host.
            for _ in range(600):
                order = (
                    await http.get(f"/api/orders/{oid}", headers=auth(Role.OPS, "ops_1"))
                ).json()
                driver = order["assigned_driver_id"]
                if driver:
                    break
                await asyncio.sleep(0.1)
            assert driver is not None, (
                "the dispatcher did not assign the order; the run's log ends with:\n"
                + (tmp_path / "run.log").read_text(errors="replace")[-4000:]
            )
            for step in ("arrived", "picked-up", "delivered"):
                done = await http.post(
                    f"/api/orders/{oid}/{step}", headers=auth(Role.DRIVER, driver)
                )
                assert done.status_code == 200, done.text
        assert await payout_of(conns, oid), "no payout: the relay or payments did not run"
    finally:
        [code] = await stop(everything)
        log.close()
    assert code == 0
