"""The event's wire form: written from objects (``Event.to_json``) or around data already in
JSON text (``wire_json``, the relay's way), it reads back as the same event."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from ontheway.events.model import EncodedEvent, Event, wire_json

DATA = {
    "order": {"order_id": "ord_sf_1", "total": "12.50", "items": [{"name": "Café crème", "q": 2}]},
    "eta_legs": {"to_customer_s": 431.25, "driver": None, "drivers_near": 7},
    "quote": 'a "quoted" \\ text',
}


def an_event() -> Event:
    return Event(
        event_id="5b0c3c1e-8d07-4a39-9a53-0f1f4f2a9b11", order_id="ord_sf_1",
        event_type="ORDER_PLACED", ts=datetime(2026, 12, 7, 20, 15, 1, 123456, tzinfo=UTC),
        data=DATA, actor="user_1", shard="americas", seq=42,
    )  # fmt: skip


def test_an_event_reads_back_from_its_wire_form() -> None:
    event = an_event()
    assert Event.from_json(event.to_json()) == event


@pytest.mark.parametrize(
    "text",
    [
        # PostgreSQL's jsonb output: spaces after separators, non-ASCII as it is.
        '{"foo": 1}',
        json.dumps(DATA, ensure_ascii=False),
        json.dumps(DATA, separators=(",", ":")),
    ],
)
def test_data_given_as_json_text_reads_back_as_the_same_data(text: str) -> None:
    event = an_event()
    wire = wire_json(
        event.event_id, event.order_id, event.event_type, event.ts, text, event.actor,
        event.shard, event.seq,
    )  # fmt: skip
    encoded = EncodedEvent(event.order_id, wire)
    back = Event.from_json(encoded.to_json())
    assert back == Event(**{**event.__dict__, "data": json.loads(text)})
