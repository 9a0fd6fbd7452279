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
        return json.dumps({
            "event_id": self.event_id, "order_id": self.order_id,
            "event_type": self.event_type, "ts": self.ts.isoformat(), "data": self.data,
            "actor": self.actor, "shard": self.shard, "seq": self.seq,
        }, separators=(",", ":"))  # fmt: skip

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
