import asyncio
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from ontheway.errors import Conflict, InvalidInput
from ontheway.orders.audit import STATE_FIELDS
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import order_view
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from tests.helpers import order_for


async def place(orders: OrderService, sf: dict[str, Any], customer: str) -> str:
    order, _ = await orders.place(customer, order_for(sf["restaurants"][0]))
    return str(order["order_id"])


async def assert_rebuilt_state_equals_row(queries: OrderQueries, order_id: str) -> None:
    row = order_view(await queries.get(order_id))
    rebuilt = await queries.state_at(order_id, None)
    assert rebuilt is not None
    assert {k: rebuilt[k] for k in STATE_FIELDS} == {k: row[k] for k in STATE_FIELDS}


async def test_an_order_goes_from_placed_to_delivered_with_an_event_per_step(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    driver = sf["drivers"][0]["driver_id"]
    await orders.transition(order_id, EventType.DRIVER_ASSIGNED, "ops_1", driver_id=driver)
    for event in (EventType.DRIVER_ARRIVED_RESTAURANT, EventType.ORDER_PICKED_UP):
        await orders.transition(order_id, event, driver, expect_driver=driver)
        await assert_rebuilt_state_equals_row(queries, order_id)
    row = await orders.transition(order_id, EventType.ORDER_DELIVERED, driver, expect_driver=driver)
    view = order_view(row)
    assert view["status"] == "delivered"
    assert view["payment_status"] == "captured"
    assert view["pickup_time"] and view["delivered_at"]
    events = [e["event_type"] for e in await queries.events(order_id)]
    assert events == [
        "ORDER_PLACED",
        "DRIVER_ASSIGNED",
        "DRIVER_ARRIVED_RESTAURANT",
        "ORDER_PICKED_UP",
        "ORDER_DELIVERED",
    ]
    await assert_rebuilt_state_equals_row(queries, order_id)


async def test_the_state_at_a_past_moment_is_rebuilt_from_the_events(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    between = datetime.now(UTC)
    await asyncio.sleep(0.01)
    await orders.transition(
        order_id, EventType.DRIVER_ASSIGNED, "ops_1", driver_id=sf["drivers"][1]["driver_id"]
    )
    then = await queries.state_at(order_id, between)
    assert then is not None and then["status"] == "searching_driver"
    assert then["assigned_driver_id"] is None
    now = await queries.state_at(order_id, None)
    assert now is not None and now["status"] == "driver_assigned"
    before_placing = await queries.state_at(order_id, datetime(2000, 1, 1, tzinfo=UTC))
    assert before_placing is None


async def test_an_illegal_transition_is_a_conflict_and_changes_nothing(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    with pytest.raises(Conflict) as info:
        await orders.transition(order_id, EventType.ORDER_DELIVERED, "drv_x")
    assert "searching_driver" in info.value.message
    assert (await queries.get(order_id))["status"] == "searching_driver"
    assert len(await queries.events(order_id)) == 1


async def test_two_dispatchers_racing_for_one_order_assign_it_once(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    drivers = [d["driver_id"] for d in sf["drivers"][:4]]
    results = await asyncio.gather(
        *(
            orders.transition(order_id, EventType.DRIVER_ASSIGNED, "dispatch", driver_id=d)
            for d in drivers
        ),
        return_exceptions=True,
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    events = [e["event_type"] for e in await queries.events(order_id)]
    assert events.count("DRIVER_ASSIGNED") == 1


async def test_only_the_assigned_driver_moves_the_order(
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    assigned, other = sf["drivers"][2]["driver_id"], sf["drivers"][3]["driver_id"]
    await orders.transition(order_id, EventType.DRIVER_ASSIGNED, "ops", driver_id=assigned)
    with pytest.raises(Conflict):
        await orders.transition(
            order_id, EventType.DRIVER_ARRIVED_RESTAURANT, other, expect_driver=other
        )


async def test_cancelling_returns_the_stock_and_voids_the_payment(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][0]
    before = await _stock(queries, restaurant)
    order_id = await place(orders, sf, f"user_{uid}")
    assert await _stock(queries, restaurant) == [q - 1 for q in before]
    row = await orders.transition(order_id, EventType.ORDER_CANCELLED, f"user_{uid}")
    assert order_view(row)["payment_status"] == "voided"
    assert await _stock(queries, restaurant) == before
    with pytest.raises(Conflict):
        await orders.transition(order_id, EventType.ORDER_CANCELLED, f"user_{uid}")
    # The refused second cancel put no stock back and recorded nothing.
    assert await _stock(queries, restaurant) == before
    assert [e["event_type"] for e in await queries.events(order_id)] == [
        "ORDER_PLACED",
        "ORDER_CANCELLED",
    ]
    assert (await queries.get(order_id))["payment_status"] == "voided"
    await assert_rebuilt_state_equals_row(queries, order_id)


async def test_cancels_at_once_of_orders_sharing_items_never_deadlock(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    """Orders of the same items, each listing them in its own order, cancelled all at once:
    each puts its stock back (the rows locked in id order, as placing does), none fails."""
    restaurant = sf["restaurants"][1]
    lines = [{"item_id": i["item_id"], "quantity": 1} for i in restaurant["items"]]
    async with queries.shards.connection("sf") as conn:
        await conn.execute(
            "UPDATE inventory SET quantity = quantity + 1000 WHERE item_id = ANY(%s)",
            ([line["item_id"] for line in lines],),
        )
    before = await _stock(queries, restaurant)
    rng = random.Random(uid)
    placed = [
        await orders.place(
            f"user_{uid}", order_for(restaurant, items=rng.sample(lines, len(lines)))
        )
        for _ in range(150)
    ]
    rows = await asyncio.gather(
        *(orders.transition(o["order_id"], EventType.ORDER_CANCELLED, "ops") for o, _ in placed)
    )
    assert {row["status"] for row in rows} == {"cancelled"}
    assert await _stock(queries, restaurant) == before


async def test_an_order_cannot_be_cancelled_after_pickup(
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    driver = sf["drivers"][4]["driver_id"]
    await orders.transition(order_id, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    await orders.transition(order_id, EventType.DRIVER_ARRIVED_RESTAURANT, driver)
    await orders.transition(order_id, EventType.ORDER_PICKED_UP, driver)
    with pytest.raises(Conflict):
        await orders.transition(order_id, EventType.ORDER_CANCELLED, f"user_{uid}")


async def test_a_driver_dropping_out_sends_the_order_back_to_searching(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    first, second = sf["drivers"][5]["driver_id"], sf["drivers"][0]["driver_id"]
    await orders.transition(order_id, EventType.DRIVER_ASSIGNED, "ops", driver_id=first)
    row = await orders.transition(
        order_id, EventType.DRIVER_UNAVAILABLE, "fleet-monitor", data={"driver_id": first}
    )
    assert row["status"] == "searching_driver_again" and row["driver_id"] is None
    await orders.transition(order_id, EventType.DRIVER_ASSIGNED, "ops", driver_id=second)
    await assert_rebuilt_state_equals_row(queries, order_id)


async def test_assigning_an_unknown_driver_is_refused(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order_id = await place(orders, sf, f"user_{uid}")
    with pytest.raises(InvalidInput):
        await orders.transition(order_id, EventType.DRIVER_ASSIGNED, "ops", driver_id="drv_nope")
    assert (await queries.get(order_id))["status"] == "searching_driver"
    assert len(await queries.events(order_id)) == 1


async def _stock(queries: OrderQueries, restaurant: dict[str, Any]) -> list[int]:
    async with queries.shards.connection("sf") as conn:
        out = []
        for item in restaurant["items"][:2]:
            cur = await conn.execute(
                "SELECT quantity FROM inventory WHERE item_id = %s", (item["item_id"],)
            )
            row = await cur.fetchone()
            assert row is not None
            out.append(int(row["quantity"]))
        return out
