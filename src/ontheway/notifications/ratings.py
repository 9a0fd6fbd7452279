"""Customers rate delivered orders; drivers' ratings follow.

``POST /api/orders/{order_id}/rating``: only the order's customer (403), only once it is
delivered (409 ``not_delivered``), once (409 ``already_rated``). The rating and its
``ORDER_RATED`` event are written in one transaction on the order's shard.

A driver's rating (``drivers.rating`` and the ``rating`` of its Redis profile, which dispatch
scoring reads) is the mean of all its ratings on the shard, recomputed from the ``ratings``
table on each ``ORDER_RATED`` (not an incremental mean): exact, independent of the order in
which events are handled, and a repeated or lost update is corrected by the next one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from ontheway.auth import Principal, Role
from ontheway.errors import Conflict, Forbidden, NotFound
from ontheway.orders.ids import region_of
from ontheway.orders.lifecycle import EventType, Status
from ontheway.orders.models import iso
from ontheway.orders.store import ShardAccess, fetch_order, insert_event

RECENT_RATINGS = 500
"""A driver's rating is the mean of this many of its latest ratings."""

MAX_COMMENT = 500


class RateOrder(BaseModel):
    """The body of ``POST /api/orders/{order_id}/rating``."""

    model_config = ConfigDict(extra="forbid")
    rating: Annotated[int, Field(strict=True, ge=1, le=5)]
    comment: str | None = Field(default=None, max_length=MAX_COMMENT)


def rating_view(row: dict[str, Any]) -> dict[str, Any]:
    """A rating as the API shows it."""
    return {
        "order_id": row["order_id"],
        "customer_id": row["customer_id"],
        "driver_id": row["driver_id"],
        "rating": int(row["rating"]),
        "comment": row["comment"],
        "created_at": iso(row["created_at"]),
    }


async def rate_order(
    shards: ShardAccess, caller: Principal, order_id: str, body: RateOrder
) -> dict[str, Any]:
    """Record the customer's rating of its delivered order, with ``ORDER_RATED``."""
    region = region_of(order_id, "ord")
    now = datetime.now(UTC)
    async with shards.connection(region) as conn, conn.transaction():
        order = await fetch_order(conn, order_id, lock=True)
        if caller.role is not Role.CUSTOMER or order["customer_id"] != caller.sub:
            raise Forbidden("only the order's customer may rate it", field="order_id")
        if order["status"] != Status.DELIVERED or order["driver_id"] is None:
            raise Conflict(
                f"only a delivered order can be rated; this one is {order['status']}",
                field="status",
                code="not_delivered",
            )
        cur = await conn.execute(
            "INSERT INTO ratings (order_id, customer_id, driver_id, rating, comment, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (order_id) DO NOTHING"
            " RETURNING order_id, customer_id, driver_id, rating, comment, created_at",
            (order_id, caller.sub, order["driver_id"], body.rating, body.comment, now),
        )
        row = await cur.fetchone()
        if row is None:
            raise Conflict("this order was rated already", field="order_id", code="already_rated")
        await insert_event(
            conn, order_id, order["created_at"], EventType.ORDER_RATED, caller.sub,
            {"rating": body.rating, "comment": body.comment, "driver_id": order["driver_id"]},
            now,
        )  # fmt: skip
        return rating_view(row)


async def rating_of(shards: ShardAccess, order_id: str) -> dict[str, Any]:
    """The rating of an order; NotFound when it was not rated (yet)."""
    async with shards.connection(region_of(order_id, "ord")) as conn:
        cur = await conn.execute(
            "SELECT order_id, customer_id, driver_id, rating, comment, created_at FROM ratings"
            " WHERE order_id = %s",
            (order_id,),
        )
        row = await cur.fetchone()
    if row is None:
        raise NotFound(f"order {order_id} has no rating", field="order_id", code="not_rated")
    return rating_view(row)


async def refresh_driver_rating(conn: Any, driver_id: str) -> Decimal | None:
    """Set ``drivers.rating`` to the mean of the driver's last ``RECENT_RATINGS`` ratings
    (two decimals), in the caller's transaction; returns it (None when the driver has no
    ratings or no row). Read from the index (driver, newest first, with the rating): the
    same cost for a driver's ten-thousandth rating as for its tenth."""
    cur = await conn.execute(
        "UPDATE drivers d SET rating = m.mean FROM (SELECT round(avg(r.rating), 2) AS mean"
        " FROM (SELECT rating FROM ratings WHERE driver_id = %s"
        " ORDER BY created_at DESC LIMIT %s) r) m"
        " WHERE d.driver_id = %s AND m.mean IS NOT NULL RETURNING d.rating",
        (driver_id, RECENT_RATINGS, driver_id),
    )
    row = await cur.fetchone()
    return None if row is None else Decimal(row["rating"])


async def rated_driver(conn: Any, order_id: str) -> str | None:
    """The driver a rated order's rating is about."""
    cur = await conn.execute("SELECT driver_id FROM ratings WHERE order_id = %s", (order_id,))
    row = await cur.fetchone()
    return None if row is None else str(row["driver_id"])
