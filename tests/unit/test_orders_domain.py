from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ontheway.errors import Conflict, NotFound
from ontheway.orders import pricing
from ontheway.orders.audit import rebuild
from ontheway.orders.ids import created_span, created_span_of, id_time, new_id, region_of
from ontheway.orders.lifecycle import ACTIVE, BEFORE_PICKUP, EventType, Status, transition


def test_the_happy_path_of_the_lifecycle() -> None:
    status = Status.SEARCHING_DRIVER
    for event, expected in [
        (EventType.DRIVER_ASSIGNED, Status.DRIVER_ASSIGNED),
        (EventType.DRIVER_ARRIVED_RESTAURANT, Status.DRIVER_AT_RESTAURANT),
        (EventType.ORDER_PICKED_UP, Status.PICKED_UP),
        (EventType.ORDER_DELIVERED, Status.DELIVERED),
    ]:
        status = transition(status, event)
        assert status is expected


@pytest.mark.parametrize("status", sorted(BEFORE_PICKUP))
def test_an_order_can_be_cancelled_before_pickup(status: Status) -> None:
    assert transition(status, EventType.ORDER_CANCELLED) is Status.CANCELLED


@pytest.mark.parametrize("status", [Status.PICKED_UP, Status.DELIVERED, Status.CANCELLED])
def test_an_order_cannot_be_cancelled_after_pickup_or_twice(status: Status) -> None:
    with pytest.raises(Conflict):
        transition(status, EventType.ORDER_CANCELLED)


@pytest.mark.parametrize("status", [Status.DRIVER_ASSIGNED, Status.DRIVER_AT_RESTAURANT])
def test_a_driver_dropping_out_before_pickup_sends_the_order_back_to_searching(
    status: Status,
) -> None:
    assert transition(status, EventType.DRIVER_UNAVAILABLE) is Status.SEARCHING_DRIVER_AGAIN
    assert transition(Status.SEARCHING_DRIVER_AGAIN, EventType.DRIVER_ASSIGNED) is (
        Status.DRIVER_ASSIGNED
    )
    with pytest.raises(Conflict):
        transition(Status.SEARCHING_DRIVER, EventType.DRIVER_UNAVAILABLE)


def test_a_driver_lost_after_pickup_does_not_send_the_order_back_to_searching() -> None:
    with pytest.raises(Conflict):
        transition(Status.PICKED_UP, EventType.DRIVER_UNAVAILABLE)


def test_nothing_leaves_a_final_state() -> None:
    for final in (Status.DELIVERED, Status.CANCELLED):
        assert final not in ACTIVE
        for event in EventType:
            with pytest.raises(Conflict):
                transition(final, event)


def test_events_that_do_not_change_the_status_are_refused_as_transitions() -> None:
    with pytest.raises(Conflict):
        transition(Status.SEARCHING_DRIVER, EventType.ORDER_READY)


def test_fees_are_money_rounded_and_capped() -> None:
    assert pricing.delivery_fee(0) == Decimal("1.99")
    assert pricing.delivery_fee(1_050) == Decimal("2.49")
    assert pricing.delivery_fee(500_000) == pricing.MAX_FEE
    assert pricing.subtotal([(Decimal("3.10"), 3), (Decimal("0.05"), 1)]) == Decimal("9.35")
    assert pricing.money(Decimal("0.005")) == Decimal("0.01")


def test_ids_carry_their_region_even_with_underscores() -> None:
    order_id = new_id("ord", "mexico_city")
    assert region_of(order_id, "ord") == "mexico_city"
    assert new_id("ord", "sf") != new_id("ord", "sf")


def test_an_order_id_carries_the_time_it_was_made_and_bounds_its_creation() -> None:
    before = datetime.now(UTC)
    order_id = new_id("ord", "sf")
    after = datetime.now(UTC)
    made = id_time(order_id)
    assert made is not None
    assert before - timedelta(milliseconds=1) <= made <= after
    earliest, latest = created_span(order_id)
    assert earliest < before - timedelta(minutes=30) and after < latest < after + timedelta(hours=1)
    # Ids made by another scheme (or by hand) carry no time: any creation time fits.
    assert id_time("ord_sf_abcd") is None
    lo, hi = created_span("ord_sf_abcd")
    assert lo.year == 1 and hi.year == 9999
    # Several ids: the span that holds each one's.
    later = new_id("ord", "sf")
    assert created_span_of([order_id, later]) == (earliest, created_span(later)[1])
    assert created_span_of([]) == (lo, hi)


@pytest.mark.parametrize(
    "bad", ["", "ord_", "ord_sf", "rest_sf_abcd", "ord_SF_abcd", "ord_sf_abc'd", "x" * 200]
)
def test_a_malformed_order_id_names_nothing(bad: str) -> None:
    with pytest.raises(NotFound):
        region_of(bad, "ord")


def _event(kind: EventType, ts: datetime, **data: object) -> dict[str, object]:
    return {"event_type": kind.value, "ts": ts, "data": data}


def test_the_state_is_rebuilt_from_events_up_to_a_moment() -> None:
    t0 = datetime(2026, 11, 1, 12, tzinfo=UTC)
    placed = {"order_id": "ord_sf_x", "status": "searching_driver", "assigned_driver_id": None}
    events = [
        _event(EventType.ORDER_PLACED, t0, order=placed),
        _event(EventType.ORDER_CONFIRMED, t0 + timedelta(seconds=5), prep_time_s=600),
        _event(
            EventType.DRIVER_ASSIGNED,
            t0 + timedelta(seconds=10),
            changes={"assigned_driver_id": "drv_1"},
        ),
        _event(
            EventType.ORDER_CANCELLED,
            t0 + timedelta(seconds=20),
            changes={"payment_status": "voided"},
        ),
    ]
    assert rebuild(events, t0 - timedelta(seconds=1)) is None
    early = rebuild(events, t0 + timedelta(seconds=9))
    assert early is not None and early["status"] == "searching_driver"
    late = rebuild(events, t0 + timedelta(seconds=15))
    assert late is not None and late["assigned_driver_id"] == "drv_1"
    final = rebuild(events)
    assert final is not None and final["status"] == "cancelled"
    assert final["payment_status"] == "voided"
