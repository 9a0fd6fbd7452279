"""The pure mapping from order events to notifications, and the rating body's rules."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from ontheway.errors import NotFound
from ontheway.notifications.messages import (
    OrderFacts,
    eta_text,
    notices_for,
    rate_request,
)
from ontheway.notifications.ratings import RateOrder
from ontheway.notifications.store import notification_id, region_of_notification
from ontheway.orders.lifecycle import EventType

FACTS = OrderFacts(
    order_id="ord_sf_0000000000abcdefgh",
    customer_id="user_1",
    restaurant_id="rest_sf_1234",
    driver_id="drv_7",
    driver_name="Ana",
    estimated_delivery="2026-11-25T18:42:00Z",
)
UNASSIGNED = OrderFacts(order_id=FACTS.order_id, customer_id="user_1", restaurant_id="rest_sf_1")


def who(event: EventType, data: dict[str, Any], facts: OrderFacts = FACTS) -> dict[str, str]:
    """Recipient -> kind of the notifications an event gives."""
    notices = notices_for(event.value, data, facts)
    found = {n.recipient_id: n.kind for n in notices}
    assert len(found) == len(notices), "one notification per recipient"
    return found


def test_a_placed_order_tells_only_the_restaurant_with_its_item_count() -> None:
    data = {"order": {"items": [{"item_id": "a", "quantity": 2}, {"item_id": "b", "quantity": 1}]}}
    (notice,) = notices_for(EventType.ORDER_PLACED.value, data, FACTS)
    assert (notice.recipient_id, notice.kind) == ("rest_sf_1234", "new_order")
    assert "3 items" in notice.body


def test_an_assignment_tells_the_customer_the_driver_and_eta_and_tells_the_driver() -> None:
    data = {"changes": {"assigned_driver_id": "drv_9"}}
    assert who(EventType.DRIVER_ASSIGNED, data) == {
        "user_1": "driver_assigned",
        "drv_9": "order_assigned",
    }
    customer = notices_for(EventType.DRIVER_ASSIGNED.value, data, FACTS)[0]
    assert customer.body == "Your driver is Ana, arriving by 18:42 UTC."
    assert customer.data["driver_id"] == "drv_9"
    assert customer.data["estimated_delivery"] == "2026-11-25T18:42:00Z"


def test_an_assignment_after_the_driver_was_lost_says_new_driver() -> None:
    facts = OrderFacts(**{**FACTS.__dict__, "reassigned": True})
    data = {"changes": {"assigned_driver_id": "drv_7"}}
    notices = notices_for(EventType.DRIVER_ASSIGNED.value, data, facts)
    assert notices[0].kind == "new_driver"
    assert notices[0].body.startswith("We found you a new driver: Ana")


def test_customer_only_events_tell_the_customer_and_nobody_else() -> None:
    expected = {
        EventType.DRIVER_UNAVAILABLE: "finding_new_driver",
        EventType.NO_DRIVER_FOUND: "no_driver_found",
        EventType.ORDER_PICKED_UP: "picked_up",
        EventType.ORDER_DELIVERED: "delivered",
        EventType.ROUTE_UPDATED: "eta_updated",
    }
    for event, kind in expected.items():
        assert who(event, {}) == {"user_1": kind}, event


def test_a_route_update_carries_the_new_estimate_from_the_event() -> None:
    data = {"estimated_delivery": "2026-11-25T19:05:00Z"}
    (notice,) = notices_for(EventType.ROUTE_UPDATED.value, data, FACTS)
    assert notice.data == {"estimated_delivery": "2026-11-25T19:05:00Z"}
    assert "19:05 UTC" in notice.body


def test_a_cancellation_tells_customer_restaurant_and_the_driver_when_there_is_one() -> None:
    data = {"reason": "changed my mind", "by": "customer"}
    assert who(EventType.ORDER_CANCELLED, data) == {
        "user_1": "order_cancelled",
        "rest_sf_1234": "order_cancelled",
        "drv_7": "order_cancelled",
    }
    assert set(who(EventType.ORDER_CANCELLED, data, UNASSIGNED)) == {"user_1", "rest_sf_1"}


def test_an_offer_is_recorded_for_the_offered_driver_only() -> None:
    data = {"driver_id": "drv_3", "expires_at": 1_900_000_000.0}
    assert who(EventType.DRIVER_OFFERED, data) == {"drv_3": "offer"}
    assert notices_for(EventType.DRIVER_OFFERED.value, data, FACTS)[0].data["expires_at"] == (
        1_900_000_000.0
    )


def test_flags_and_internal_events_tell_nobody() -> None:
    for event in (
        EventType.ORDER_FLAGGED,
        EventType.ORDER_CONFIRMED,
        EventType.ORDER_READY,
        EventType.OFFER_DECLINED,
        EventType.OFFER_EXPIRED,
        EventType.ORDER_RATED,
    ):
        assert notices_for(event.value, {"driver_id": "drv_1"}, FACTS) == [], event


def test_an_assignment_without_a_driver_tells_nobody() -> None:
    assert notices_for(EventType.DRIVER_ASSIGNED.value, {}, UNASSIGNED) == []


def test_the_rate_request_goes_to_the_customer_and_names_the_driver() -> None:
    notice = rate_request(FACTS)
    assert (notice.recipient_id, notice.kind) == ("user_1", "rate_order")
    assert "Ana" in notice.body
    assert notice.data["rate_path"] == f"/api/orders/{FACTS.order_id}/rating"


def test_eta_text_is_empty_without_a_readable_estimate() -> None:
    assert eta_text(None) == ""
    assert eta_text("not a time") == ""
    assert eta_text("2026-11-25T07:05:00+00:00") == ", arriving by 07:05 UTC"


def test_a_notification_id_is_stable_per_event_recipient_and_kind_and_carries_the_region() -> None:
    first = notification_id(FACTS.order_id, "e1", "user_1", "delivered")
    assert first == notification_id(FACTS.order_id, "e1", "user_1", "delivered")
    assert first != notification_id(FACTS.order_id, "e1", "user_2", "delivered")
    assert first != notification_id(FACTS.order_id, "e2", "user_1", "delivered")
    assert region_of_notification(first) == "sf"
    with pytest.raises(NotFound):
        region_of_notification("ntf_sf_nothex")


@pytest.mark.parametrize(
    "body",
    [
        {"rating": 0},
        {"rating": 6},
        {"rating": "5"},
        {"rating": 4.5},
        {"rating": True},
        {},
        {"rating": 3, "comment": "x" * 501},
        {"rating": 3, "stars": 3},
    ],
)
def test_a_rating_outside_one_to_five_or_with_a_long_comment_is_refused(
    body: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError):
        RateOrder.model_validate(body)


def test_a_rating_with_a_comment_of_500_characters_is_accepted() -> None:
    rating = RateOrder.model_validate({"rating": 5, "comment": "x" * 500})
    assert rating.rating == 5
