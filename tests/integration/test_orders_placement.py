import asyncio
from decimal import Decimal
from typing import Any

import pytest

from ontheway.connections import Connections
from ontheway.errors import Conflict, InvalidInput
from ontheway.orders.models import PlaceOrder
from ontheway.orders.service import OrderService
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog
from ontheway.seeding import seed_with_fleet
from ontheway.settings import Settings
from tests.helpers import order_for


async def stock(shards: ShardAccess, item_id: str) -> int:
    async with shards.connection("sf") as conn:
        row = await (
            await conn.execute("SELECT quantity FROM inventory WHERE item_id = %s", (item_id,))
        ).fetchone()
        assert row is not None
        return int(row["quantity"])


async def rows_of_customer(shards: ShardAccess, customer_id: str) -> dict[str, int]:
    async with shards.connection("sf") as conn:
        counts = {}
        for table in ("orders", "payments"):
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE customer_id = %s", (customer_id,)
            )
            row = await cur.fetchone()
            assert row is not None
            counts[table] = int(row["n"])
        cur = await conn.execute(
            "SELECT count(*) AS n FROM order_events WHERE actor = %s", (customer_id,)
        )
        row = await cur.fetchone()
        assert row is not None
        counts["order_events"] = int(row["n"])
        return counts


async def test_placing_an_order_writes_order_payment_event_and_takes_stock(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][0]
    first, second = restaurant["items"][:2]
    before = [await stock(shards, first["item_id"]), await stock(shards, second["item_id"])]
    order, created = await orders.place(f"user_{uid}", order_for(restaurant, quantity=2))
    assert created
    assert order["status"] == "searching_driver"
    assert order["order_id"].startswith("ord_sf_")
    subtotal = 2 * (Decimal(first["price"]) + Decimal(second["price"]))
    assert Decimal(order["subtotal"]) == subtotal
    assert Decimal(order["total"]) == subtotal + Decimal(order["delivery_fee"]) + Decimal("2.00")
    assert order["payment_status"] == "authorized"
    assert [await stock(shards, first["item_id"]), await stock(shards, second["item_id"])] == [
        before[0] - 2,
        before[1] - 2,
    ]
    assert await rows_of_customer(shards, f"user_{uid}") == {
        "orders": 1,
        "payments": 1,
        "order_events": 1,
    }


async def test_short_stock_is_a_conflict_naming_the_item_and_changes_nothing(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][1]
    item = restaurant["items"][0]
    async with shards.connection("sf") as conn:
        await conn.execute(
            "UPDATE inventory SET quantity = 1 WHERE item_id = %s", (item["item_id"],)
        )
    other = restaurant["items"][1]
    other_before = await stock(shards, other["item_id"])
    with pytest.raises(Conflict) as info:
        await orders.place(f"user_{uid}", order_for(restaurant, quantity=2))
    assert item["name"] in info.value.message
    assert info.value.code == "insufficient_stock"
    assert await stock(shards, item["item_id"]) == 1
    assert await stock(shards, other["item_id"]) == other_before
    assert await rows_of_customer(shards, f"user_{uid}") == {
        "orders": 0,
        "payments": 0,
        "order_events": 0,
    }
    await restock(shards, item["item_id"])


async def test_concurrent_orders_never_take_stock_below_zero(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    restaurant = sf["restaurants"][2]
    item = restaurant["items"][0]
    async with shards.connection("sf") as conn:
        await conn.execute(
            "UPDATE inventory SET quantity = 5 WHERE item_id = %s", (item["item_id"],)
        )
    body = PlaceOrder.model_validate(
        {
            **order_for(restaurant).model_dump(mode="json"),
            "items": [{"item_id": item["item_id"], "quantity": 1}],
        }
    )
    results = await asyncio.gather(
        *(orders.place(f"user_{uid}_{i}", body) for i in range(8)), return_exceptions=True
    )
    placed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, Conflict)]
    assert len(placed) == 5 and len(refused) == 3
    assert await stock(shards, item["item_id"]) == 0
    await restock(shards, item["item_id"])


async def restock(shards: ShardAccess, item_id: str) -> None:
    """Put stock back so that later tests can order the item."""
    async with shards.connection("sf") as conn:
        await conn.execute("UPDATE inventory SET quantity = 500 WHERE item_id = %s", (item_id,))


# Each step of the placement fails in turn (a trigger raising on that step, for this test's
# customer only); nothing of the order may remain.
FAILING_STEPS = {
    "inventory": ("inventory", "BEFORE UPDATE", "true"),
    "customer": ("customers", "BEFORE INSERT", "NEW.customer_id = '{c}'"),
    "order": ("orders", "BEFORE INSERT", "NEW.customer_id = '{c}'"),
    "payment": ("payments", "BEFORE INSERT", "NEW.customer_id = '{c}'"),
    "event": ("order_events", "BEFORE INSERT", "NEW.actor = '{c}'"),
}


@pytest.mark.parametrize("step", sorted(FAILING_STEPS))
async def test_an_order_is_not_created_when_any_step_fails(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
    step: str,
) -> None:
    customer = f"user_{uid}"
    restaurant = sf["restaurants"][3]
    table, timing, condition = FAILING_STEPS[step]
    item_ids = [i["item_id"] for i in restaurant["items"][:2]]
    if step == "inventory":
        condition = "OLD.item_id = ANY(ARRAY[" + ",".join(f"'{i}'" for i in item_ids) + "])"
    before = [await stock(shards, i) for i in item_ids]
    fn, trigger = f"fail_{uid}", f"fail_{uid}"
    async with shards.connection("sf") as conn:
        await conn.execute(
            f"CREATE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"RAISE EXCEPTION 'injected failure at {step}'; END $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {trigger} {timing} ON {table} FOR EACH ROW "
            f"WHEN ({condition.format(c=customer)}) EXECUTE FUNCTION {fn}()"
        )
    try:
        with pytest.raises(Exception, match=f"injected failure at {step}"):
            await orders.place(customer, order_for(restaurant), idempotency_key=f"k-{uid}")
    finally:
        async with shards.connection("sf") as conn:
            await conn.execute(f"DROP TRIGGER {trigger} ON {table}")
            await conn.execute(f"DROP FUNCTION {fn}()")
    assert [await stock(shards, i) for i in item_ids] == before
    assert await rows_of_customer(shards, customer) == {
        "orders": 0,
        "payments": 0,
        "order_events": 0,
    }
    async with shards.connection("sf") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM idempotency_keys WHERE key = %s", (f"k-{uid}",)
        )
        row = await cur.fetchone()
        assert row is not None and row["n"] == 0
    # And once the fault is gone, the same request goes through.
    order, created = await orders.place(customer, order_for(restaurant), idempotency_key=f"k-{uid}")
    assert created and order["status"] == "searching_driver"


async def test_a_retried_request_with_the_same_key_returns_the_first_order(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    body = order_for(sf["restaurants"][4])
    results = await asyncio.gather(
        *(orders.place(f"user_{uid}", body, idempotency_key=uid) for _ in range(4))
    )
    assert len({order["order_id"] for order, _ in results}) == 1
    assert sorted(created for _, created in results) == [False, False, False, True]
    assert (await rows_of_customer(shards, f"user_{uid}"))["orders"] == 1


async def test_a_replayed_key_with_a_different_body_is_a_conflict(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
) -> None:
    await orders.place(f"user_{uid}", order_for(sf["restaurants"][4]), idempotency_key=uid)
    with pytest.raises(Conflict) as info:
        await orders.place(
            f"user_{uid}", order_for(sf["restaurants"][4], tip="3.00"), idempotency_key=uid
        )
    assert info.value.code == "idempotency_key_reused"
    assert (await rows_of_customer(shards, f"user_{uid}"))["orders"] == 1


async def test_a_key_is_held_across_shards_and_freed_when_nothing_was_placed(
    orders: OrderService,
    shards: ShardAccess,
    conns: Connections,
    catalog: Catalog,
    settings: Settings,
    sf: dict[str, Any],
    uid: str,
) -> None:
    london = await seed_with_fleet(
        conns, catalog, settings, "london", restaurants=1, customers=1, drivers=0, seed=7
    )
    customer = f"user_{uid}"
    await orders.place(customer, order_for(sf["restaurants"][4]), idempotency_key=uid)
    # The same key for a restaurant of another shard: refused, nothing written there.
    with pytest.raises(Conflict) as info:
        await orders.place(customer, order_for(london["restaurants"][0]), idempotency_key=uid)
    assert info.value.code == "idempotency_key_reused"
    async with shards.connection("london") as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM orders WHERE customer_id = %s", (customer,)
        )
        assert (await cur.fetchone())["n"] == 0  # type: ignore[index]
    # A placement that fails leaves its key free for a corrected request.
    too_far = order_for(sf["restaurants"][4], delivery_location={"lat": 37.95, "lng": -122.09})
    with pytest.raises(InvalidInput) as refused:
        await orders.place(customer, too_far, idempotency_key=f"{uid}-2")
    assert refused.value.code == "outside_delivery_zone"
    _, created = await orders.place(
        customer, order_for(sf["restaurants"][4]), idempotency_key=f"{uid}-2"
    )
    assert created and (await rows_of_customer(shards, customer))["orders"] == 2


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"restaurant_id": "rest_sf_doesnotexist"}, "unknown_restaurant"),
        ({"restaurant_id": "rest_atlantis_0000"}, "unknown_restaurant"),
        ({"items": [{"item_id": "item_sf_nonexistent", "quantity": 1}]}, "unknown_item"),
        ({"delivery_location": {"lat": 40.7128, "lng": -74.006}}, "address_in_another_region"),
        ({"delivery_location": {"lat": 0.0, "lng": -30.0}}, "outside_all_regions"),
        ({"delivery_location": {"lat": 37.95, "lng": -122.09}}, "outside_delivery_zone"),
    ],
)
async def test_bad_orders_are_refused_and_leave_nothing(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
    change: dict[str, Any],
    code: str,
) -> None:
    body = order_for(sf["restaurants"][5], **change)
    with pytest.raises(InvalidInput) as info:
        await orders.place(f"user_{uid}", body)
    assert info.value.code == code
    assert await rows_of_customer(shards, f"user_{uid}") == {
        "orders": 0,
        "payments": 0,
        "order_events": 0,
    }


async def set_price(shards: ShardAccess, item_id: str, price: Decimal) -> None:
    async with shards.connection("sf") as conn:
        await conn.execute("UPDATE menu_items SET price = %s WHERE item_id = %s", (price, item_id))


async def test_a_price_changed_between_the_read_and_the_write_is_read_again(
    orders: OrderService,
    shards: ShardAccess,
    sf: dict[str, Any],
    uid: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The placement reads the menu, then writes in one statement that checks it again
    under the stock's locks: a price changed in between is not charged at the old one. The
    placement reads again and charges the new price; a menu that keeps changing is a 409
    that leaves nothing behind."""
    restaurant = sf["restaurants"][3]
    item = restaurant["items"][0]
    old = Decimal(item["price"])
    prices = iter([old + Decimal("1.00"), old + Decimal("2.00"), old + Decimal("3.00")])
    prepare = orders._prepare
    changes = {"left": 1}

    async def prepare_then_change(*args: Any) -> Any:
        prepared = await prepare(*args)
        if changes["left"]:
            changes["left"] -= 1
            await set_price(shards, item["item_id"], next(prices))
        return prepared

    monkeypatch.setattr(orders, "_prepare", prepare_then_change)
    before = await stock(shards, item["item_id"])
    try:
        order, created = await orders.place(f"user_{uid}", order_for(restaurant, quantity=1))
        (line,) = [x for x in order["items"] if x["item_id"] == item["item_id"]]
        assert created and Decimal(line["price"]) == old + Decimal("1.00")
        assert await stock(shards, item["item_id"]) == before - 1
        changes["left"] = 2  # changed after each of the two reads
        with pytest.raises(Conflict) as refused:
            await orders.place(f"user_{uid}_b", order_for(restaurant, quantity=1))
        assert refused.value.code == "menu_changed"
        assert await rows_of_customer(shards, f"user_{uid}_b") == {
            "orders": 0,
            "payments": 0,
            "order_events": 0,
        }
        assert await stock(shards, item["item_id"]) == before - 1
    finally:
        await set_price(shards, item["item_id"], old)
