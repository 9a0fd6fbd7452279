from decimal import Decimal
from typing import Any

import pytest

from ontheway.errors import Conflict, InvalidInput
from ontheway.orders.lifecycle import EventType
from ontheway.orders.models import ChangeOrder
from ontheway.orders.queries import OrderQueries
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from tests.helpers import order_for
from tests.integration.test_orders_lifecycle import assert_rebuilt_state_equals_row
from tests.integration.test_orders_placement import stock


async def test_changing_items_moves_stock_totals_and_payment_in_one_go(
    orders: OrderService,
    queries: OrderQueries,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][0]
    first, second, third = (i["item_id"] for i in restaurant["items"][:3])
    order, _ = await orders.place(f"user_{uid}", order_for(restaurant))
    before = {i: await stock(shards, i) for i in (first, second, third)}
    change = ChangeOrder.model_validate(
        {"items": [{"item_id": first, "quantity": 3}, {"item_id": third, "quantity": 1}]}
    )
    row = await orders.change(order["order_id"], f"user_{uid}", change)
    after = {i: await stock(shards, i) for i in (first, second, third)}
    assert after == {first: before[first] - 2, second: before[second] + 1, third: before[third] - 1}
    prices = {i["item_id"]: Decimal(i["price"]) for i in restaurant["items"]}
    assert row["subtotal"] == 3 * prices[first] + prices[third]
    assert row["total"] == row["subtotal"] + row["delivery_fee"] + row["tip"]
    async with shards.connection("sf") as conn:
        cur = await conn.execute(
            "SELECT amount FROM payments WHERE order_id = %s", (order["order_id"],)
        )
        payment = await cur.fetchone()
    assert payment is not None and payment["amount"] == row["total"]
    events = [e["event_type"] for e in await queries.events(order["order_id"])]
    assert events == ["ORDER_PLACED", "ORDER_CHANGED"]
    await assert_rebuilt_state_equals_row(queries, order["order_id"])


async def test_moving_the_address_recomputes_the_fee_and_says_it_moved(
    orders: OrderService,
    queries: OrderQueries,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][1]
    order, _ = await orders.place(f"user_{uid}", order_for(restaurant))
    far = {"lat": restaurant["lat"] + 0.02, "lng": restaurant["lng"], "address": "far away"}
    row = await orders.change(
        order["order_id"], f"user_{uid}", ChangeOrder.model_validate({"delivery_location": far})
    )
    assert row["delivery_fee"] > Decimal(order["delivery_fee"])
    assert row["distance_m"] > order["distance_m"]
    changed = (await queries.events(order["order_id"]))[-1]
    assert changed["data"]["address_moved"] is True
    await assert_rebuilt_state_equals_row(queries, order["order_id"])


async def test_a_change_that_fails_leaves_the_order_and_stock_alone(
    orders: OrderService,
    queries: OrderQueries,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][2]
    order, _ = await orders.place(f"user_{uid}", order_for(restaurant))
    item = restaurant["items"][0]["item_id"]
    before = await stock(shards, item)
    too_many = ChangeOrder.model_validate({"items": [{"item_id": item, "quantity": 50}]})
    async with shards.connection("sf") as conn:
        await conn.execute("UPDATE inventory SET quantity = 10 WHERE item_id = %s", (item,))
    with pytest.raises(Conflict):
        await orders.change(order["order_id"], f"user_{uid}", too_many)
    outside = ChangeOrder.model_validate(
        {"delivery_location": {"lat": 40.71, "lng": -74.0, "address": "New York"}}
    )
    with pytest.raises(InvalidInput):
        await orders.change(order["order_id"], f"user_{uid}", outside)
    assert await stock(shards, item) == 10
    assert len(await queries.events(order["order_id"])) == 1
    async with shards.connection("sf") as conn:
        await conn.execute("UPDATE inventory SET quantity = %s WHERE item_id = %s", (before, item))


async def test_an_order_cannot_be_changed_after_pickup(
    orders: OrderService,
    sf: dict[str, Any],
    uid: str,
) -> None:
    order, _ = await orders.place(f"user_{uid}", order_for(sf["restaurants"][3]))
    oid, driver = order["order_id"], sf["drivers"][0]["driver_id"]
    await orders.transition(oid, EventType.DRIVER_ASSIGNED, "ops", driver_id=driver)
    await orders.transition(oid, EventType.DRIVER_ARRIVED_RESTAURANT, driver)
    await orders.transition(oid, EventType.ORDER_PICKED_UP, driver)
    change = ChangeOrder.model_validate(
        {"items": [{"item_id": sf["restaurants"][3]["items"][0]["item_id"], "quantity": 2}]}
    )
    with pytest.raises(Conflict):
        await orders.change(oid, f"user_{uid}", change)
