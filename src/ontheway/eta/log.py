"""The ETA log: every estimate made (``eta_estimates``) beside what happened
(``order_timings``), on the order's shard. Written by the ETA consumer; read by training,
evaluation and ``GET /api/orders/{id}/eta``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg.types.json import Jsonb

_INSERT = """
INSERT INTO eta_estimates (order_id, event_id, stage, made_at, time_scale, baseline_s,
    predicted_s, low_s, high_s, estimated_delivery, method, model_version, features)
VALUES (%(order)s, %(event)s, %(stage)s, %(made_at)s, %(scale)s, %(baseline)s, %(predicted)s,
    %(low)s, %(high)s, %(delivery)s, %(method)s, %(version)s, %(features)s)
ON CONFLICT (order_id, event_id) DO NOTHING
"""


async def insert_estimate(
    conn: Any, order_id: str, event_id: str, made_at: datetime, estimate: dict[str, Any]
) -> None:
    """Keep one estimate (``Estimate.to_dict()`` with its ``features``)."""
    await conn.execute(_INSERT, {
        "order": order_id, "event": event_id, "stage": estimate["stage"], "made_at": made_at,
        "scale": float(estimate.get("time_scale", 1.0)), "baseline": estimate["baseline_s"],
        "predicted": estimate["predicted_s"], "low": estimate["low_s"],
        "high": estimate["high_s"], "delivery": estimate["estimated_delivery"],
        "method": estimate["method"], "version": estimate.get("model_version"),
        "features": Jsonb(estimate["features"]),
    })  # fmt: skip


_HISTORY = """
SELECT e.stage, e.made_at, e.estimated_delivery, e.method, e.model_version, e.baseline_s,
       e.predicted_s, e.low_s, e.high_s, e.time_scale
FROM eta_estimates e WHERE e.order_id = %s ORDER BY e.made_at, e.stage
"""


async def history(conn: Any, order_id: str) -> list[dict[str, Any]]:
    """An order's estimates, oldest first: when, at which stage, the estimated delivery and
    its window (RFC 3339), how it was made."""
    cur = await conn.execute(_HISTORY, (order_id,))
    out = []
    for r in await cur.fetchall():
        made, scale = r["made_at"], float(r["time_scale"])
        out.append({
            "stage": r["stage"], "made_at": _iso(made),
            "estimated_delivery": _iso(r["estimated_delivery"]),
            "earliest": _iso(made + timedelta(seconds=float(r["low_s"]) / scale)),
            "latest": _iso(made + timedelta(seconds=float(r["high_s"]) / scale)),
            "method": r["method"], "model_version": r["model_version"],
            "baseline_delivery": _iso(made + timedelta(seconds=float(r["baseline_s"]) / scale)),
        })  # fmt: skip
    return out


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


_DELIVERED = """
SELECT e.order_id, e.stage, e.made_at, e.time_scale, e.baseline_s, e.predicted_s, e.low_s,
       e.high_s, e.method, e.features, t.placed_at, t.delivered_at, t.restaurant_id,
       extract(epoch FROM t.ready_at - t.placed_at) * t.time_scale AS prep_s,
       t.ready_at > t.arrived_at AS waited_for_food
FROM eta_estimates e JOIN order_timings t USING (order_id)
WHERE t.region = %(region)s AND t.delivered_at IS NOT NULL
  AND (%(after)s::timestamptz IS NULL OR t.placed_at > %(after)s)
  AND (%(until)s::timestamptz IS NULL OR t.placed_at <= %(until)s)
ORDER BY t.placed_at, e.made_at
"""


async def delivered_estimates(
    conn: Any, region: str, after: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Estimates of the region's delivered orders placed in (after, until], by placement."""
    cur = await conn.execute(_DELIVERED, {"region": region, "after": after, "until": until})
    return [dict(r) for r in await cur.fetchall()]
