"""The learned ETA on the real servers: the promise and its window at placement, the ETA log,
re-estimation at assignment and pickup pushed to the tracking socket, training from the
database with its refusals, model versions on disk. Over the downtown San Francisco map
imported as the map of a region nobody else's tests use (Portland; see test_orders_eta)."""

import math
import random
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from psycopg.types.json import Jsonb

from ontheway.connections import Connections
from ontheway.errors import InvalidInput
from ontheway.eta.consumer import Reestimator, eta_consumer
from ontheway.eta.estimator import EtaEstimator
from ontheway.eta.facts import RegionFacts
from ontheway.eta.features import FEATURES, STAGE_CODE, Stage
from ontheway.eta.learn import evaluate, train
from ontheway.eta.log import history
from ontheway.eta.model import FORMAT, EtaModel, ModelFileError
from ontheway.eta.registry import ModelMissing, Registry, versions
from ontheway.events.bus import Delivery
from ontheway.events.model import Event
from ontheway.events.worker import handle_once
from ontheway.fleet import keys
from ontheway.fleet.tracking import ChannelHub
from ontheway.orders.lifecycle import EventType
from ontheway.orders.store import ShardAccess
from ontheway.regions import Catalog
from ontheway.roads.planning import DROPOFF_SERVICE_S
from tests.helpers import order_for
from tests.integration.test_orders_eta import (
    FERRY_BUILDING,
    MOSCONE,
    UNION_SQUARE,
    World,
    deliver_to,
    put_driver,
    world_fixture,
)
from tests.integration.test_roads_reroute import next_message
from tests.integration.test_roads_routing import region

world = world_fixture("portland")


async def event_of(world: World, order_id: str, kind: EventType) -> Event:
    """The order's last event of ``kind``, as the relay publishes it."""
    found = [e for e in await world.queries.events(order_id) if e["event_type"] == kind.value]
    e = found[-1]
    return Event(str(e["event_id"]), order_id, e["event_type"], e["ts"], e["data"], e["actor"],
                 "americas", 0)  # fmt: skip


async def test_an_order_is_estimated_at_placement_assignment_and_pickup_with_a_window(
    world: World, conns: Connections, uid: str, tmp_path: Path
) -> None:
    driver = world.drivers[0]
    await put_driver(world, driver, MOSCONE)
    body = order_for(world.restaurants[0], delivery_location=deliver_to(FERRY_BUILDING))
    order, _ = await world.orders.place(f"user_{uid}", body)
    oid = order["order_id"]
    # No model for the region: the promise is the baseline, and the response says so.
    eta = order["eta"]
    assert eta["method"] == "baseline" and "no ETA model for region 'portland'" in eta["note"]
    assert eta["estimated_delivery"] == order["estimated_delivery"]
    assert eta["earliest"] < eta["estimated_delivery"] < eta["latest"]
    placed = await event_of(world, oid, EventType.ORDER_PLACED)
    assert set(placed.data["eta"]["features"]) == set(FEATURES)
    assert placed.data["eta"]["features"]["stage"] == STAGE_CODE[Stage.PLACEMENT]
    assert placed.data["eta"]["features"]["drivers_near"] >= 1

    consumer = eta_consumer(Reestimator(EtaEstimator(Registry(tmp_path)), world.roads,
                                        world.fleet, RegionFacts(1.0)))  # fmt: skip
    assert await handle_once(conns, consumer, Delivery(placed, 1, None))
    await world.orders.transition(oid, EventType.DRIVER_ASSIGNED, "system", driver_id=driver)
    assigned = await event_of(world, oid, EventType.DRIVER_ASSIGNED)
    hub = ChannelHub(conns.require_redis())
    try:
        async with hub.follow(keys.tracking_channel(oid)) as tracking:
            assert await handle_once(conns, consumer, Delivery(assigned, 1, None))
            pushed = await next_message(tracking, "eta")
    finally:
        await hub.aclose()
    assert pushed["stage"] == "assignment" and pushed["method"] == "baseline"
    assert pushed["earliest"] < pushed["estimated_delivery"] < pushed["latest"]
    assert not await handle_once(conns, consumer, Delivery(assigned, 2, None))  # a duplicate

    await put_driver(world, driver, UNION_SQUARE)
    await world.orders.transition(oid, EventType.DRIVER_ARRIVED_RESTAURANT, driver,
                                  expect_driver=driver)  # fmt: skip
    await world.orders.transition(oid, EventType.ORDER_PICKED_UP, driver, expect_driver=driver)
    picked = await event_of(world, oid, EventType.ORDER_PICKED_UP)
    assert await handle_once(conns, consumer, Delivery(picked, 1, None))

    async with world.shards.connection(world.region) as conn:
        estimates = await history(conn, oid)
        cur = await conn.execute(
            "SELECT stage, baseline_s, features FROM eta_estimates WHERE order_id = %s"
            " ORDER BY made_at", (oid,),
        )  # fmt: skip
        rows = await cur.fetchall()
    assert [e["stage"] for e in estimates] == ["placement", "assignment", "pickup"]
    assert estimates[0]["estimated_delivery"] == order["estimated_delivery"]  # the promise
    to_customer = (await world.roads.route([UNION_SQUARE, FERRY_BUILDING])).duration_s
    pickup = rows[2]
    assert pickup["baseline_s"] == pytest.approx(to_customer + DROPOFF_SERVICE_S, abs=2)
    assert pickup["features"]["prep_remaining_s"] == 0
    assert rows[1]["features"]["driver_distance_m"] > 100  # from Moscone, not at the counter


# -- training from the database --------------------------------------------------------------


def synthetic_log(count: int, start: datetime) -> list[tuple[dict[str, Any], datetime, float]]:
    """(features, made_at, actual seconds) of placement estimates where the actual time is the
    baseline times the driver's pace plus noise: a model can learn it, a baseline cannot."""
    rng = random.Random(7)
    out = []
    for i in range(count):
        baseline = rng.uniform(900, 2400)
        pace = rng.uniform(0.8, 1.5)
        features = {name: None for name in FEATURES} | {
            "stage": 0.0, "baseline_s": baseline, "driver_pace": pace,
            "to_customer_s": baseline / 2, "hour": 12.0, "weekday": 2.0,
        }  # fmt: skip
        actual = baseline * pace + rng.gauss(0, 60)
        out.append((features, start + timedelta(minutes=i), actual))
    return out


async def write_log(shards: ShardAccess, region_id: str, rows: list[Any]) -> None:
    async with shards.connection(region_id) as conn, conn.transaction():
        for features, made_at, actual in rows:
            oid = f"ord_{region_id}_{uuid.uuid4().hex[:12]}"
            delivered = made_at + timedelta(seconds=actual)
            await conn.execute(
                "INSERT INTO order_timings (order_id, region, restaurant_id, placed_at,"
                " delivered_at) VALUES (%s, %s, 'rest_x', %s, %s)",
                (oid, region_id, made_at, delivered),
            )
            baseline = features["baseline_s"]
            await conn.execute(
                "INSERT INTO eta_estimates (order_id, event_id, stage, made_at, baseline_s,"
                " predicted_s, low_s, high_s, estimated_delivery, method, features)"
                " VALUES (%s, %s, 'placement', %s, %s, %s, %s, %s, %s, 'baseline', %s)",
                (oid, uuid.uuid4(), made_at, baseline, baseline, baseline, baseline,
                 made_at + timedelta(seconds=baseline), Jsonb(features)),
            )  # fmt: skip


async def test_training_reads_the_log_writes_versions_and_refuses_what_it_cannot_use(
    conns: Connections, uid: str, tmp_path: Path
) -> None:
    region_id = f"etat_{uid}"
    shards = ShardAccess(conns, Catalog([region(region_id, (10.0, 10.0, 10.1, 10.1), "UTC")]))
    start = datetime(2030, 1, 1, 11, tzinfo=UTC)
    await write_log(shards, region_id, synthetic_log(800, start))

    with pytest.raises(InvalidInput) as too_few:
        await train(shards, tmp_path, region_id, min_deliveries=1000, holdout=0.2)
    assert "has 800 delivered orders" in too_few.value.message
    assert "at least 1000" in too_few.value.message
    assert versions(tmp_path / region_id) == []

    first = await train(shards, tmp_path, region_id, min_deliveries=200, holdout=0.2)
    assert first.path.name == "v0001.json"
    assert first.model.trained["deliveries"] == 640
    held = first.evaluation.stage("placement")
    assert held is not None and held.estimates == 160
    assert held.model_mae < 0.5 * held.baseline_mae  # it learned the pace
    assert 0.5 <= held.coverage <= 1.0
    second = await train(shards, tmp_path, region_id, min_deliveries=200, holdout=0.0)
    assert second.path.name == "v0002.json"

    # Later deliveries: evaluate judges the newest model on them only.
    await write_log(shards, region_id, synthetic_log(50, start + timedelta(days=1)))
    later = await evaluate(shards, tmp_path, region_id)
    assert later.version == "v0002" and later.deliveries == 50
    assert later.predict_ms_p50 < 5

    # A model file of another format is refused, and the region falls back to the baseline.
    doc = (tmp_path / region_id / "v0002.json").read_text().replace(FORMAT, "ontheway-eta/0")
    (tmp_path / region_id / "v0003.json").write_text(doc)
    with pytest.raises(ModelFileError, match="ontheway-eta/0"):
        EtaModel.load(tmp_path / region_id / "v0003.json")
    missing = Registry(tmp_path).model(region_id)
    assert isinstance(missing, ModelMissing) and "cannot be used" in missing.reason
    assert isinstance(Registry(tmp_path).model("nowhere"), ModelMissing)
    assert not math.isnan(held.improvement)
