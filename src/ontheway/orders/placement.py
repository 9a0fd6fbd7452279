"""Placing an order: one transaction on the restaurant's shard (changing one: ``change``).
The restaurant, the items and the address are checked, stock is taken (never below zero),
prices are computed with Decimal, the payment recorded, the order written and its event
appended, all or nothing: one statement (``_PLACE``), which re-checks under the stock's
locks what was read before it (with an Idempotency-Key, the key's row joins it in one
transaction).

Before a placement's transaction, so that it stays short: the estimated delivery (by road when
the region has a map, see ``roads.planning.PlacementEstimator``; ``ORDER_PLACED`` records
``eta_method`` and ``eta_legs``) and the delivery zone's answer for the address (the
``zones:{region}`` graph; a region, or a restaurant, without trusted zones keeps the PostGIS
radius check). A change of address keeps the radius check and the first estimate."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg.types.json import Jsonb

from ontheway.connections import dependency_errors
from ontheway.errors import Conflict, InvalidInput, NotFound
from ontheway.eta.placement import PlacementLearner
from ontheway.fleet.scripts import RELEASE_LOCK
from ontheway.fleet.service import open_store
from ontheway.orders import pricing
from ontheway.orders.ids import new_id, region_of
from ontheway.orders.lifecycle import EventType, Status
from ontheway.orders.models import (
    DeliveryLocation,
    OrderLine,
    PlaceOrder,
    money_str,
    order_view,
)
from ontheway.orders.store import Conn, ShardAccess, fetch_order
from ontheway.regions import LatLng, OutsideAllRegions
from ontheway.roads.delivery import Delivery
from ontheway.roads.planning import (
    NewOrder,
    PlacementEstimator,
    PlacementEta,
    straight_line_eta,
)
from ontheway.roads.routing import RoadService

_RESTAURANT_POINT = (
    "name, is_open, delivery_radius_m,"
    " ST_Y(location::geometry) AS lat, ST_X(location::geometry) AS lng, prep_time_mean_s,"
    " ST_Distance(location, ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography)"
    " AS distance_m,"
    " (SELECT coalesce(json_agg(x), '[]') FROM (SELECT m.item_id, m.name, m.price::text AS price,"
    "   m.available, i.quantity FROM menu_items m JOIN inventory i USING (item_id)"
    "   WHERE m.restaurant_id = %(r)s AND m.item_id = ANY(%(items)s)) x) AS items"
)
"""The restaurant and the asked items as the placement reads them before its write (no lock:
the write checks again, under the items' locks, what it relies on)."""


_PLACE = (
    "WITH w AS (SELECT * FROM unnest(%(item_ids)s::text[], %(quantities)s::int[],"
    "   %(prices)s::numeric[]) AS w(item_id, quantity, price)),"
    " locked AS (SELECT m.item_id, m.name, m.price, m.available, i.quantity"
    "   FROM menu_items m JOIN inventory i USING (item_id)"
    "   WHERE m.restaurant_id = %(restaurant)s AND m.item_id = ANY(%(item_ids)s)"
    "   ORDER BY m.item_id FOR UPDATE OF i),"
    " ok AS (SELECT coalesce((SELECT r.is_open FROM restaurants r"
    "   WHERE r.restaurant_id = %(restaurant)s), false) AS open,"
    "   (SELECT count(*) FROM locked l JOIN w USING (item_id) WHERE l.available"
    "   AND l.quantity >= w.quantity AND l.price = w.price) = %(n)s AS stocked),"
    " go AS (SELECT open AND stocked AS go FROM ok),"
    " s AS (UPDATE inventory i SET quantity = i.quantity - w.quantity, updated_at = %(now)s"
    "   FROM w, go WHERE go.go AND i.item_id = w.item_id),"
    " c AS (INSERT INTO customers (customer_id) SELECT %(customer)s FROM go WHERE go.go"
    "   ON CONFLICT DO NOTHING),"
    " o AS (INSERT INTO orders (order_id, region, customer_id, restaurant_id,"
    "   customer_location, delivery_address, restaurant_location, items, subtotal,"
    "   delivery_fee, tip, total, status, created_at, estimated_delivery, distance_m)"
    "   SELECT %(order)s, %(region)s, %(customer)s, %(restaurant)s,"
    "   ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography, %(address)s,"
    "   ST_SetSRID(ST_MakePoint(%(r_lng)s, %(r_lat)s), 4326)::geography, %(items)s,"
    "   %(subtotal)s, %(fee)s, %(tip)s, %(total)s, %(status)s, %(now)s, %(eta)s,"
    "   %(distance)s FROM go WHERE go.go),"
    " p AS (INSERT INTO payments (payment_id, order_id, order_created_at, customer_id,"
    "   amount, status, created_at) SELECT %(payment)s, %(order)s, %(now)s,"
    "   %(customer)s, %(total)s, 'authorized', %(now)s FROM go WHERE go.go),"
    " e AS (INSERT INTO order_events (event_id, order_id, order_created_at, event_type, ts,"
    "   data, actor) SELECT %(event)s, %(order)s, %(now)s, %(event_type)s, %(now)s,"
    "   %(data)s, %(customer)s FROM go WHERE go.go)"
    " SELECT go.go AS placed, ok.open AS is_open, CASE WHEN go.go THEN NULL ELSE"
    "   (SELECT coalesce(json_agg(json_build_object('item_id', l.item_id, 'name', l.name,"
    "   'price', l.price::text, 'available', l.available, 'quantity', l.quantity)), '[]')"
    "   FROM locked l) END AS items FROM ok, go"
)
"""Placing an order in one statement: it locks the asked items' stock rows in id order (so
that concurrent orders never deadlock), checks under those locks that every item is still
available at the price read before with enough stock and that the restaurant is open, and
only then takes the stock and writes the customer, the order, the payment and the event
(foreign keys are checked at the end of the statement). It returns whether it wrote, the
restaurant's state and, when it did not write, the locked items, from which the refusal is
explained. One round trip where BEGIN, the read that locked, the write and COMMIT were four."""

PLACE_TRIES = 2
"""A placement whose menu changed between its read and its write is tried again once."""


class MenuChanged(Conflict):
    """An item's price changed between the placement's read and its write."""

    code = "menu_changed"


IDEMPOTENCY_CLAIM_S = 24 * 3600
"""How long an Idempotency-Key is held across shards (on its shard: the retention setting
``retention_idempotency_keys_days``, ``schema/retention.py``)."""


def request_hash(customer_id: str, cmd: PlaceOrder) -> str:
    """A digest of the request, to tell a retry from a different request with the same key."""
    canonical = json.dumps([customer_id, cmd.model_dump(mode="json")], sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def merged(lines: list[OrderLine]) -> dict[str, int]:
    """Quantity per item, lines of the same item added up."""
    out: dict[str, int] = {}
    for line in lines:
        out[line.item_id] = out.get(line.item_id, 0) + line.quantity
    return out


class OrderPlacement:
    """Placing and changing orders."""

    def __init__(self, shards: ShardAccess, roads: RoadService | None = None):
        self.shards = shards
        self.estimator: PlacementEstimator | None = None
        conns = shards.conns
        self.learner = PlacementLearner.for_settings(conns.settings)
        if roads is None and conns.graphs is not None:
            roads = RoadService(conns.graphs, shards.catalog)
        if roads is not None:
            settings = conns.settings
            self.estimator = PlacementEstimator(
                roads,
                None if conns.redis is None else open_store(conns.redis, settings),
                allowance_s=settings.eta_assignment_allowance_s,
                drivers=settings.eta_nearby_drivers,
                radius_m=settings.eta_driver_radius_m,
                supply_ttl_s=settings.eta_supply_ttl_s / settings.time_scale,
            )

    def _check_address(self, region: str, loc: DeliveryLocation) -> None:
        """The address must lie in the restaurant's region."""
        try:
            address_region = self.shards.catalog.region_for(loc.lat, loc.lng).region
        except OutsideAllRegions as exc:
            raise InvalidInput(
                exc.message, field="delivery_location", code="outside_all_regions"
            ) from None
        if address_region != region:
            raise InvalidInput(
                f"the delivery address is in {address_region}, the restaurant in {region}",
                field="delivery_location",
                code="address_in_another_region",
            )

    async def place(
        self, customer_id: str, cmd: PlaceOrder, idempotency_key: str | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Place an order; returns (order view, created). A retry with the same key returns
        the first order with created=False."""
        try:
            region = region_of(cmd.restaurant_id, "rest")
            self.shards.catalog.get(region)
        except NotFound:
            raise InvalidInput(
                f"no restaurant {cmd.restaurant_id!r}",
                field="restaurant_id",
                code="unknown_restaurant",
            ) from None
        self._check_address(region, cmd.delivery_location)
        for attempt in range(PLACE_TRIES):
            try:
                return await self._place_once(region, customer_id, cmd, idempotency_key)
            except MenuChanged:
                if attempt == PLACE_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    async def _place_once(
        self, region: str, customer_id: str, cmd: PlaceOrder, idempotency_key: str | None
    ) -> tuple[dict[str, Any], bool]:
        now = datetime.now(UTC)
        eta, zone, restaurant = await self._prepare(region, cmd, now)
        order_id = new_id("ord", region)
        digest, claim = "", None
        if idempotency_key is not None:
            digest = request_hash(customer_id, cmd)
            claim = await self._claim_everywhere(customer_id, idempotency_key, region, digest)
        try:
            async with self.shards.connection(region) as conn:
                if idempotency_key is None:
                    # One statement, alone in its transaction: one round trip.
                    row = await self._place(
                        conn, region, order_id, customer_id, cmd, now, eta, zone, restaurant
                    )
                else:
                    async with conn.transaction():  # the key and the order commit together
                        first = await self._claim_key(
                            conn, customer_id, idempotency_key, digest, order_id
                        )
                        if first is not None:
                            return order_view(await fetch_order(conn, first)), False
                        row = await self._place(
                            conn, region, order_id, customer_id, cmd, now, eta, zone, restaurant
                        )
        except BaseException:
            if claim is not None:  # nothing was placed: the key is free again
                await self._release_claim(*claim)
            raise
        return order_view(row) | {"eta": self.learner.public(eta)}, True

    async def _claim_everywhere(
        self, customer_id: str, key: str, region: str, digest: str
    ) -> tuple[str, str] | None:
        """Hold the key for this request across shards, in Redis, for
        ``IDEMPOTENCY_CLAIM_S`` (the shard's ``idempotency_keys`` only sees its own regions:
        the same key for a restaurant of another shard would place a second order). Returns
        (name, value) when this request took it, None when an identical request holds it (the
        shard then returns its order); ``Conflict`` when another request holds it."""
        redis = self.shards.conns.redis
        if redis is None:
            return None  # no Redis configured: the shard's check alone
        name, mine = f"idempotency:{{{customer_id}}}:{key}", f"{region}:{digest}"
        with dependency_errors("redis"):
            held = await redis.set(name, mine, nx=True, ex=IDEMPOTENCY_CLAIM_S, get=True)
        if held is None:
            return name, mine
        if (held.decode() if isinstance(held, bytes) else held) != mine:
            raise Conflict(
                "this Idempotency-Key was used for a different request",
                field="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return None

    async def _release_claim(self, name: str, value: str) -> None:
        redis = self.shards.conns.redis
        if redis is not None:
            with dependency_errors("redis"):  # a claim is released as a lock is: by its owner
                await redis.eval(RELEASE_LOCK, 1, name, value)

    async def _prepare(
        self, region: str, cmd: PlaceOrder, now: datetime
    ) -> tuple[PlacementEta, Delivery | None, dict[str, Any]]:
        """Before the write: the restaurant with the asked items (``_RESTAURANT_POINT``), the
        estimate (by road when the region has a map) and the delivery zone's answer (None:
        no zones, check the radius)."""
        loc = cmd.delivery_location
        query, params = self.learner.kitchen_query(
            _RESTAURANT_POINT, cmd.restaurant_id, region, now
        )
        async with self.shards.connection(region) as conn:
            cur = await conn.execute(
                query,
                params | {"lng": loc.lng, "lat": loc.lat, "items": sorted(merged(cmd.items))},
            )
            found = await cur.fetchone()
        if found is None:
            raise InvalidInput(
                f"no restaurant {cmd.restaurant_id!r}",
                field="restaurant_id",
                code="unknown_restaurant",
            )
        kitchen = await self.learner.kitchen(found, region, now, self.shards.connection)
        prep_s, distance_m = float(found["prep_time_mean_s"]), float(found["distance_m"])
        if self.estimator is None:
            eta = straight_line_eta(now, prep_s, distance_m, "no_road_service")
            return self.learner.learned(region, eta, kitchen, now), None, found
        eta, zone = await self.estimator.prepare(
            NewOrder(
                region,
                cmd.restaurant_id,
                now,
                LatLng(lat=found["lat"], lng=found["lng"]),
                LatLng(lat=loc.lat, lng=loc.lng),
                prep_s,
                distance_m,
            )
        )
        return self.learner.learned(region, eta, kitchen, now), zone, found

    async def _claim_key(
        self, conn: Conn, customer_id: str, key: str, digest: str, order_id: str
    ) -> str | None:
        """Record the key for this order; if a first request holds it, return its order id."""
        cur = await conn.execute(
            "INSERT INTO idempotency_keys (customer_id, key, request_hash, order_id)"
            " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING order_id",
            (customer_id, key, digest, order_id),
        )
        if await cur.fetchone() is not None:
            return None
        cur = await conn.execute(
            "SELECT request_hash, order_id FROM idempotency_keys"
            " WHERE customer_id = %s AND key = %s",
            (customer_id, key),
        )
        held = await cur.fetchone()
        assert held is not None
        if held["request_hash"] != digest:
            raise Conflict(
                "this Idempotency-Key was used for a different request",
                field="Idempotency-Key",
                code="idempotency_key_reused",
            )
        return str(held["order_id"])

    async def _read(
        self,
        conn: Conn,
        restaurant_id: str,
        loc: DeliveryLocation,
        item_ids: list[str],
        zone: Delivery | None = None,
    ) -> dict[str, Any]:
        """In one statement: the restaurant with its distance to the address, and the asked
        items with their stock, whose rows are locked in id order (so that concurrent orders
        never deadlock) until the transaction ends. The address must lie in the restaurant's
        delivery zone (by road) when its region has zones, else within its radius (PostGIS,
        as the crow flies)."""
        cur = await conn.execute(
            "WITH items AS (SELECT m.item_id, m.name, m.price::text AS price, m.available,"
            "   i.quantity FROM menu_items m JOIN inventory i USING (item_id)"
            "   WHERE m.restaurant_id = %(restaurant)s AND m.item_id = ANY(%(items)s)"
            "   ORDER BY m.item_id FOR UPDATE OF i)"
            " SELECT r.name, r.is_open, r.delivery_radius_m, r.prep_time_mean_s,"
            " ST_Y(r.location::geometry) AS lat, ST_X(r.location::geometry) AS lng,"
            " ST_Distance(r.location,"
            "   ST_SetSRID(ST_MakePoint(%(lng)s, %(lat)s), 4326)::geography) AS distance_m,"
            " (SELECT coalesce(json_agg(items), '[]') FROM items) AS items"
            " FROM restaurants r WHERE r.restaurant_id = %(restaurant)s",
            {"restaurant": restaurant_id, "items": sorted(item_ids), "lng": loc.lng,
             "lat": loc.lat},
        )  # fmt: skip
        restaurant = await cur.fetchone()
        if restaurant is None:
            raise InvalidInput(
                f"no restaurant {restaurant_id!r}", field="restaurant_id", code="unknown_restaurant"
            )
        self._check_restaurant(restaurant, zone)
        return restaurant

    @staticmethod
    def _check_restaurant(restaurant: dict[str, Any], zone: Delivery | None) -> None:
        """The restaurant is open and the address within its delivery zone: by road when
        its region has zones (``zone``), else within its radius (as the crow flies)."""
        if not restaurant["is_open"]:
            raise Conflict(
                f"{restaurant['name']} is closed", field="restaurant_id", code="restaurant_closed"
            )
        if zone is not None and not zone.can_deliver:
            raise InvalidInput(
                f"the address is outside the delivery zone of {restaurant['name']} (by road)",
                field="delivery_location",
                code="outside_delivery_zone",
            )
        if zone is None and restaurant["distance_m"] > restaurant["delivery_radius_m"]:
            raise InvalidInput(
                f"the address is {restaurant['distance_m']:.0f} m away, outside the delivery "
                f"zone of {restaurant['name']} ({restaurant['delivery_radius_m']} m)",
                field="delivery_location",
                code="outside_delivery_zone",
            )

    async def _place(
        self,
        conn: Conn,
        region: str,
        order_id: str,
        customer_id: str,
        cmd: PlaceOrder,
        now: datetime,
        eta: PlacementEta,
        zone: Delivery | None,
        restaurant: dict[str, Any],
    ) -> dict[str, Any]:
        """Check the order against the restaurant and items read before (``_prepare``),
        then write it in one statement (see ``_PLACE``); ``MenuChanged`` when that read no
        longer holds (a price changed meanwhile)."""
        loc = cmd.delivery_location
        wanted = merged(cmd.items)
        self._check_restaurant(restaurant, zone)
        distance_m = float(restaurant["distance_m"])
        lines = self._check_stock(cmd.restaurant_id, restaurant["items"], cmd.items, held={})
        items = line_items(lines, wanted)
        subtotal = pricing.subtotal([(line["price"], wanted[line["item_id"]]) for line in lines])
        fee = pricing.delivery_fee(distance_m)
        total = pricing.money(subtotal + fee + cmd.tip)
        # The row as fetch_order would return it: the event's snapshot needs no extra read.
        row = {
            "order_id": order_id,
            "region": region,
            "customer_id": customer_id,
            "restaurant_id": cmd.restaurant_id,
            "driver_id": None,
            "items": items,
            "subtotal": subtotal,
            "delivery_fee": fee,
            "tip": cmd.tip,
            "total": total,
            "status": Status.SEARCHING_DRIVER.value,
            "delivery_address": loc.address,
            "customer_lat": loc.lat,
            "customer_lng": loc.lng,
            "restaurant_lat": restaurant["lat"],
            "restaurant_lng": restaurant["lng"],
            "created_at": now,
            "pickup_time": None,
            "estimated_delivery": eta.estimated_delivery,
            "delivered_at": None,
            "distance_m": distance_m,
            "payment_status": "authorized",
        }
        cur = await conn.execute(
            _PLACE,
            {
                "item_ids": [line["item_id"] for line in lines],
                "quantities": [wanted[line["item_id"]] for line in lines],
                "prices": [str(line["price"]) for line in lines],
                "n": len(lines),
                "customer": customer_id,
                "order": order_id,
                "region": region,
                "restaurant": cmd.restaurant_id,
                "lng": loc.lng,
                "lat": loc.lat,
                "address": loc.address,
                "r_lng": restaurant["lng"],
                "r_lat": restaurant["lat"],
                "items": Jsonb(items),
                "subtotal": subtotal,
                "fee": fee,
                "tip": cmd.tip,
                "total": total,
                "status": Status.SEARCHING_DRIVER.value,
                "now": now,
                "eta": eta.estimated_delivery,
                "distance": distance_m,
                "payment": new_id("pay", region),
                "event": uuid.uuid4(),
                "event_type": EventType.ORDER_PLACED.value,
                "data": Jsonb({"order": order_view(row), **eta.event_data()}),
            },
        )
        written = await cur.fetchone()
        assert written is not None  # one row, whether it wrote or not
        if not written["placed"]:
            # Refused under the locks: say why as the checks above would have.
            self._check_restaurant({**restaurant, "is_open": written["is_open"]}, zone)
            self._check_stock(cmd.restaurant_id, written["items"], cmd.items, held={})
            raise MenuChanged(f"the menu of {cmd.restaurant_id} changed while ordering")
        return row

    @staticmethod
    def _check_stock(
        restaurant_id: str,
        rows: list[dict[str, Any]],
        lines: list[OrderLine],
        held: dict[str, int],
    ) -> list[dict[str, Any]]:
        """Every line names an item of the restaurant with enough stock; ``held`` is stock
        the order already has and gives back. Returns the items wanted, by id."""
        wanted = merged(lines)
        found = {row["item_id"]: {**row, "price": Decimal(row["price"])} for row in rows}
        for index, line in enumerate(lines):
            item = found.get(line.item_id)
            if item is None:
                raise InvalidInput(
                    f"{restaurant_id} has no item {line.item_id!r}",
                    field=f"items.{index}.item_id",
                    code="unknown_item",
                )
            left = item["quantity"] + held.get(line.item_id, 0)
            if not item["available"] or left < wanted[line.item_id]:
                raise Conflict(
                    f"insufficient stock of {item['name']} ({line.item_id}): "
                    f"{left} left, {wanted[line.item_id]} wanted",
                    field=f"items.{index}.quantity",
                    code="insufficient_stock",
                )
        return [found[i] for i in sorted(wanted)]


def line_items(lines: list[dict[str, Any]], wanted: dict[str, int]) -> list[dict[str, Any]]:
    """The order's items as stored and shown: id, name, price and quantity."""
    return [
        {
            "item_id": line["item_id"],
            "name": line["name"],
            "price": money_str(line["price"]),
            "quantity": wanted[line["item_id"]],
        }
        for line in lines
    ]
