"""The estimate over HTTP and the ``ontheway eta`` commands' refusals."""

from datetime import datetime
from typing import Any

import httpx

from ontheway.auth import Role
from ontheway.events.consumers import record_placed
from ontheway.events.model import Event
from ontheway.orders.queries import OrderQueries
from ontheway.orders.store import ShardAccess
from tests.e2e.conftest import Server
from tests.e2e.test_cli import run_cli
from tests.e2e.test_orders_api import place
from tests.helpers import order_body


async def test_the_order_shows_its_promise_its_window_and_the_history_of_estimates(
    server: Server, sf: dict[str, Any], shards: ShardAccess, uid: str
) -> None:
    customer = f"user_{uid}"
    resp = place(server, customer, order_body(sf["restaurants"][0]))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    eta = order["eta"]
    assert eta["estimated_delivery"] == order["estimated_delivery"]
    assert eta["earliest"] < eta["estimated_delivery"] < eta["latest"]
    assert eta["method"] in ("model", "baseline")
    if eta["method"] == "baseline":  # says why: no usable model for the region
        assert "sf" in eta["note"]
    url = f"{server.base_url}/api/orders/{order['order_id']}/eta"
    # The ETA consumer keeps the log; here it is applied in-process to the placement.
    placed = (await OrderQueries(shards).events(order["order_id"]))[0]
    event = Event(str(placed["event_id"]), order["order_id"], placed["event_type"],
                  placed["ts"], placed["data"], placed["actor"], "americas", 0)  # fmt: skip
    async with shards.connection("sf") as conn, conn.transaction():
        await record_placed(conn, event)
    async with httpx.AsyncClient() as client:
        found = await client.get(url, headers=server.auth(Role.CUSTOMER, customer))
        other = await client.get(url, headers=server.auth(Role.CUSTOMER, "user_someone_else"))
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["promised_delivery"] == order["estimated_delivery"]
    assert [e["stage"] for e in body["estimates"]] == ["placement"]
    shown, promised = at(body["latest"]["earliest"]), at(eta["earliest"])
    assert abs((shown - promised).total_seconds()) < 0.01  # seconds kept to the millisecond
    assert other.status_code == 403


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_training_without_enough_deliveries_says_how_many_it_needs() -> None:
    result = run_cli("eta", "train", "--region", "helsinki", "--min-deliveries", "100000")
    assert result.returncode == 1
    assert "training needs at least 100000" in " ".join(result.stderr.split())


def test_evaluating_without_a_model_names_the_command_that_trains_one() -> None:
    result = run_cli("eta", "evaluate", "--region", "helsinki")
    assert result.returncode == 1
    assert "ontheway eta train --region helsinki" in " ".join(result.stderr.split())
