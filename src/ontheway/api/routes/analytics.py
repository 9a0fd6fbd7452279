"""Per-day figures of a region's drivers and restaurants, as the analytics consumer keeps them
(``daily_stats``): deliveries, on-time share, mean delivery and preparation times."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from ontheway.api.deps import OpsCaller, State

router = APIRouter(tags=["operations"])

_FIGURES = (
    "SELECT subject_id, deliveries, on_time, cancellations, delivery_s_sum, prepared, prep_s_sum"
    " FROM daily_stats WHERE day = %s AND subject_kind = %s AND starts_with(subject_id, %s)"
    " ORDER BY deliveries DESC, subject_id LIMIT %s"
)
_PREFIX = {"driver": "drv", "restaurant": "rest"}


@router.get("/api/ops/analytics")
async def analytics(
    state: State,
    caller: OpsCaller,
    region: Annotated[str, Query(max_length=40)],
    day: date,
    kind: Literal["driver", "restaurant"] = "restaurant",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """The day's figures of the region's drivers or restaurants, busiest first (ops of that
    region): ``on_time_share`` of deliveries made by their first promise, mean minutes."""
    state.catalog.get(region)
    caller.require_region(region)
    prefix = f"{_PREFIX[kind]}_{region}_"
    async with state.order_queries.shards.connection(region) as conn:
        cur = await conn.execute(_FIGURES, (day, kind, prefix, limit))
        rows = await cur.fetchall()
    return [_view(kind, row) for row in rows]


def _view(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    delivered, prepared = int(row["deliveries"]), int(row["prepared"])
    return {
        f"{kind}_id": row["subject_id"],
        "deliveries": delivered,
        "on_time_share": round(row["on_time"] / delivered, 3) if delivered else None,
        "mean_delivery_min": round(row["delivery_s_sum"] / delivered / 60, 1)
        if delivered
        else None,
        "cancellations": int(row["cancellations"]),
        "prepared": prepared,
        "mean_preparation_min": round(row["prep_s_sum"] / prepared / 60, 1) if prepared else None,
    }
