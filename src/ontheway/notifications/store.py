"""Notifications on the order's shard: stored in the caller's transaction, pushed after it
commits, listed for their recipient across every shard, marked read by their recipient.

A notification's id is ``ntf_<region>_<32 hex>``: the region routes it to its shard (as an
order id does), the hex is a UUID derived from the event id, the recipient and the kind, so an
event handled twice stores one notification (``ON CONFLICT DO NOTHING``).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from psycopg.types.json import Jsonb

from ontheway.connections import Connections
from ontheway.errors import DependencyUnavailable, NotFound
from ontheway.fleet.tracking import publish_inbox
from ontheway.notifications.messages import Notice
from ontheway.orders.ids import region_of
from ontheway.orders.models import iso
from ontheway.regions import Catalog, UnknownRegion

_NAMESPACE = uuid.UUID("6f1d2c47-3f0a-4d5e-9a55-2b1e0c7d9a10")
_ID = re.compile(r"^ntf_([a-z][a-z0-9_]{0,39})_([0-9a-f]{32})$")
_COLUMNS = "notification_id, recipient_id, order_id, kind, title, body, data, created_at, read_at"


def notification_id(order_id: str, event_id: str, recipient_id: str, kind: str) -> str:
    """The id of an event's notification to one recipient (the same every time)."""
    region = region_of(order_id, "ord")
    digest = uuid.uuid5(_NAMESPACE, f"{event_id}|{recipient_id}|{kind}")
    return f"ntf_{region}_{digest.hex}"


def region_of_notification(notification: str) -> str:
    """The region a notification id carries; a malformed id is NotFound."""
    match = _ID.match(notification)
    if match is None:
        raise NotFound(f"no notification {notification!r}", field="notification_id")
    return match.group(1)


def notification_view(row: dict[str, Any]) -> dict[str, Any]:
    """A notification as the API shows it."""
    return {
        "notification_id": row["notification_id"],
        "recipient_id": row["recipient_id"],
        "order_id": row["order_id"],
        "kind": row["kind"],
        "title": row["title"],
        "body": row["body"],
        "data": row["data"],
        "created_at": iso(row["created_at"]),
        "read_at": iso(row["read_at"]),
    }


async def store_notices(
    conn: Any, order_id: str, event_id: str, ts: datetime, notices: Sequence[Notice]
) -> list[dict[str, Any]]:
    """Store the notices in the caller's transaction; returns the views of those that are
    new (a notice stored before, by an earlier delivery of the event, is left alone)."""
    stored = []
    for notice in notices:
        cur = await conn.execute(
            f"INSERT INTO notifications ({_COLUMNS}, event_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, NULL, %s)"
            f" ON CONFLICT (notification_id) DO NOTHING RETURNING {_COLUMNS}",
            (notification_id(order_id, event_id, notice.recipient_id, notice.kind),
             notice.recipient_id, order_id, notice.kind, notice.title, notice.body,
             Jsonb(notice.data), ts, event_id),
        )  # fmt: skip
        row = await cur.fetchone()
        if row is not None:
            stored.append(notification_view(row))
    return stored


async def push_notifications(redis: aioredis.Redis, views: Sequence[dict[str, Any]]) -> None:
    """Push stored notifications to their recipients' open sockets (after the commit)."""
    for view in views:
        await publish_inbox(redis, view["recipient_id"], {"type": "notification", **view})


class NotificationQueries:
    """A recipient's notifications, over every shard."""

    def __init__(self, conns: Connections, catalog: Catalog) -> None:
        self.conns = conns
        self.catalog = catalog

    async def for_recipient(self, recipient_id: str, limit: int, unread: bool) -> dict[str, Any]:
        """The newest ``limit`` notifications of a recipient (only unread ones if asked), from
        every shard; a shard that is down is listed under ``unavailable``, the others answer."""
        shards = self.catalog.shards()

        async def one(shard: str) -> list[dict[str, Any]]:
            async with self.conns.shard_connection(shard) as conn:
                cur = await conn.execute(
                    f"SELECT {_COLUMNS} FROM notifications WHERE recipient_id = %s"
                    + (" AND read_at IS NULL" if unread else "")
                    + " ORDER BY created_at DESC, notification_id DESC LIMIT %s",
                    (recipient_id, limit),
                )
                rows: list[dict[str, Any]] = await cur.fetchall()
                return rows

        results = await asyncio.gather(*(one(s) for s in shards), return_exceptions=True)
        found: list[dict[str, Any]] = []
        unavailable: list[dict[str, Any]] = []
        for shard, result in zip(shards, results, strict=True):
            if isinstance(result, DependencyUnavailable):
                regions = sorted(r.region for r in self.catalog if r.shard == shard)
                unavailable.append({"shard": shard, "regions": regions, "error": result.message})
            elif isinstance(result, BaseException):
                raise result
            else:
                found.extend(result)
        found.sort(key=lambda n: (n["created_at"], n["notification_id"]), reverse=True)
        return {
            "notifications": [notification_view(row) for row in found[:limit]],
            "unavailable": unavailable,
        }

    async def mark_read(self, recipient_id: str, notification: str) -> dict[str, Any]:
        """Mark one of the recipient's notifications read (again is harmless); anyone else's,
        or one that does not exist, is NotFound."""
        try:
            shard = self.catalog.shard_for(region_of_notification(notification))
        except UnknownRegion:
            raise NotFound(f"no notification {notification!r}", field="notification_id") from None
        async with self.conns.shard_connection(shard) as conn:
            cur = await conn.execute(
                "UPDATE notifications SET read_at = coalesce(read_at, now())"
                " WHERE notification_id = %s AND recipient_id = %s"
                f" RETURNING {_COLUMNS}",
                (notification, recipient_id),
            )
            row = await cur.fetchone()
            await conn.commit()
        if row is None:
            raise NotFound(f"no notification {notification!r}", field="notification_id")
        return notification_view(row)
