"""Orders flagged for operations in a region: those that found no driver in time (the
dispatcher's list) and those whose driver vanished after pickup (the offline monitor's)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query

from ontheway.api.deps import OpsCaller, State
from ontheway.connections import dependency_errors
from ontheway.dispatch.dispatcher import flagged_key
from ontheway.fleet.recorder import LOST_AFTER_PICKUP, lost_after_pickup_key
from ontheway.orders.models import iso
from ontheway.orders.store import ShardAccess

router = APIRouter(tags=["operations"])

# Reason -> the Redis sorted set (order -> when flagged, unix seconds) of a region.
LISTS = {"no_driver_found": flagged_key, LOST_AFTER_PICKUP: lost_after_pickup_key}


async def current_rows(shards: ShardAccess, region: str, order_ids: list[str]) -> dict[str, Any]:
    """Status and driver of each listed order, now (one query on the region's shard)."""
    if not order_ids:
        return {}
    async with shards.connection(region) as conn:
        cur = await conn.execute(
            "SELECT order_id, status, driver_id FROM orders WHERE order_id = ANY(%s)",
            (order_ids,),
        )
        return {row["order_id"]: row for row in await cur.fetchall()}


@router.get("/api/ops/flags")
async def flags(
    state: State,
    caller: OpsCaller,
    region: Annotated[str, Query(max_length=40)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """The region's flagged orders, newest first, each with its reason, when it was flagged
    and its status now (ops of that region)."""
    state.catalog.get(region)
    caller.require_region(region)
    redis = state.conns.require_redis()
    found: list[tuple[float, str, str]] = []
    with dependency_errors("Redis"):
        for reason, key in LISTS.items():
            members = await redis.zrevrange(key(region), 0, limit - 1, withscores=True)
            found += [(float(m[1]), _text(m[0]), reason) for m in members]
    found.sort(reverse=True)
    found = found[:limit]
    rows = await current_rows(state.order_queries.shards, region, [oid for _, oid, _ in found])
    return [
        {
            "order_id": oid,
            "reason": reason,
            "flagged_at": iso(datetime.fromtimestamp(ts, UTC)),
            "status": rows[oid]["status"] if oid in rows else None,
            "driver_id": rows[oid]["driver_id"] if oid in rows else None,
        }
        for ts, oid, reason in found
    ]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
