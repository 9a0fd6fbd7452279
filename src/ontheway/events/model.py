"""An event as it travels on the stream. Pure: no I/O."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class Event:
    """One row of ``order_events``, as published: the order's region routes it back."""

    event_id: str
    order_id: str
    event_type: str
    ts: datetime
    data: dict[str, Any]
    actor: str
    shard: str
    seq: int

    def to_json(self) -> str:
        """The wire form (JSON, times in RFC 3339)."""
        return wire_json(
            self.event_id, self.order_id, self.event_type, self.ts,
            json.dumps(self.data, separators=(",", ":")), self.actor, self.shard, self.seq,
        )  # fmt: skip

    @classmethod
    def from_json(cls, raw: str | bytes) -> Event:
        """Parse the wire form; a malformed message raises ValueError."""
        try:
            body = json.loads(raw)
            return cls(
                event_id=str(body["event_id"]), order_id=str(body["order_id"]),
                event_type=str(body["event_type"]), ts=datetime.fromisoformat(body["ts"]),
                data=dict(body["data"]), actor=str(body["actor"]), shard=str(body["shard"]),
                seq=int(body["seq"]),
            )  # fmt: skip
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not an event: {exc}") from exc


def wire_json(
    event_id: str,
    order_id: str,
    event_type: str,
    ts: datetime,
    data_json: str,
    actor: str,
    shard: str,
    seq: int,
) -> str:
    """An event's wire form, its data given as JSON text already (``Event.from_json`` reads
    it back)."""
    envelope = json.dumps({
        "event_id": event_id, "order_id": order_id, "event_type": event_type,
        "ts": ts.isoformat(), "actor": actor, "shard": shard, "seq": seq,
    }, separators=(",", ":"))  # fmt: skip
    return f'{envelope[:-1]},"data":{data_json}}}'


@dataclass(frozen=True)
class EncodedEvent:
    """An event in its wire form, as the outbox relay publishes it: its data stays the JSON
    text PostgreSQL gives (``data::text``), never parsed into objects and written out again."""

    order_id: str
    wire: str

    def to_json(self) -> str:
        return self.wire
