"""Believable entities for a region: restaurants clustered in busy areas with menus and stock,
customers, and drivers with vehicle types and ratings. Deterministic for a given seed."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ontheway.orders.store import ShardAccess
from ontheway.regions import Region

CUISINES = {
    "Taqueria": ["Carnitas Taco", "Al Pastor Burrito", "Chips & Salsa", "Horchata", "Quesadilla"],
    "Pho": ["Pho Tai", "Spring Rolls", "Banh Mi", "Vermicelli Bowl", "Thai Iced Tea"],
    "Pizzeria": ["Margherita", "Pepperoni", "Caesar Salad", "Garlic Knots", "Tiramisu"],
    "Sushi Bar": ["Salmon Nigiri", "California Roll", "Miso Soup", "Edamame", "Spicy Tuna Roll"],
    "Burger Joint": ["Cheeseburger", "Veggie Burger", "Fries", "Milkshake", "Onion Rings"],
    "Curry House": ["Chicken Tikka Masala", "Saag Paneer", "Garlic Naan", "Samosa", "Mango Lassi"],
    "Noodle Bar": ["Dan Dan Noodles", "Pork Dumplings", "Wonton Soup", "Chow Mein", "Bao"],
    "Deli": ["Reuben", "Turkey Club", "Matzo Ball Soup", "Pickle", "Black & White Cookie"],
}
PREFIXES = [
    "Golden",
    "Little",
    "Blue",
    "Old Town",
    "Corner",
    "Sunset",
    "Harbor",
    "Lucky",
    "Union",
    "Mission",
    "Market",
    "Bay",
]
FIRST = [
    "Ana",
    "Ben",
    "Chen",
    "Dana",
    "Eli",
    "Fatima",
    "Gus",
    "Hana",
    "Ivan",
    "Jo",
    "Kai",
    "Lena",
    "Malik",
    "Nora",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tara",
]
VEHICLES = [("bicycle", 0.3), ("scooter", 0.3), ("car", 0.4)]
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"


@dataclass
class SeedResult:
    """The ids created, in the shape of ``seed --out``."""

    restaurants: list[dict[str, Any]] = field(default_factory=list)
    customers: list[str] = field(default_factory=list)
    drivers: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "restaurants": self.restaurants,
            "customers": self.customers,
            "drivers": self.drivers,
        }


def _offset(rng: random.Random, lat: float, lng: float, sigma_m: float) -> tuple[float, float]:
    """A point drawn around (lat, lng) with a normal spread of ``sigma_m`` metres."""
    d_lat = rng.gauss(0, sigma_m) / 111_320
    d_lng = rng.gauss(0, sigma_m) / (111_320 * math.cos(math.radians(lat)))
    return lat + d_lat, lng + d_lng


def _inside(
    region: Region,
    rng: random.Random,
    lat: float,
    lng: float,
    sigma_m: float,
) -> tuple[float, float]:
    for _ in range(100):
        point = _offset(rng, lat, lng, sigma_m)
        if region.bbox.contains(*point):
            return point
    return lat, lng


def _suffix(rng: random.Random) -> str:
    return "".join(rng.choice(_ALPHABET) for _ in range(10))


async def seed_region(
    shards: ShardAccess,
    region: Region,
    *,
    restaurants: int,
    customers: int,
    drivers: int,
    seed: int = 1,
    spread_m: float = 2500,
) -> SeedResult:
    """Insert restaurants (clustered), menus with stock, customers and drivers."""
    rng = random.Random(f"{region.region}:{seed}")
    out = SeedResult()
    centre = (region.center.lat, region.center.lng)
    hubs = [_inside(region, rng, *centre, spread_m) for _ in range(max(1, restaurants // 8))]
    rest_rows, item_rows = [], []
    for _ in range(restaurants):
        lat, lng = _inside(region, rng, *rng.choice(hubs), 400)
        cuisine = rng.choice(list(CUISINES))
        rid = f"rest_{region.region}_{_suffix(rng)}"
        prep_mean = rng.randint(8, 25) * 60
        rest_rows.append(
            (
                rid,
                f"{rng.choice(PREFIXES)} {cuisine}",
                region.region,
                lng,
                lat,
                rng.choice([3000, 4000, 5000, 6000]),
                prep_mean,
                int(prep_mean * rng.uniform(0.15, 0.4)),
            )
        )
        items = []
        for dish in CUISINES[cuisine]:
            iid = f"item_{region.region}_{_suffix(rng)}"
            price = Decimal(rng.randint(350, 2400)) / 100
            item_rows.append((iid, rid, dish, price, rng.randint(50, 500)))
            items.append({"item_id": iid, "name": dish, "price": f"{price:.2f}"})
        out.restaurants.append({"restaurant_id": rid, "lat": lat, "lng": lng, "items": items})
    out.customers = [f"user_{region.region}_{_suffix(rng)}" for _ in range(customers)]
    driver_rows = []
    for _ in range(drivers):
        did = f"drv_{region.region}_{_suffix(rng)}"
        vehicle = rng.choices([v for v, _ in VEHICLES], [w for _, w in VEHICLES])[0]
        lat, lng = _inside(region, rng, *centre, spread_m)
        driver_rows.append(
            (
                did,
                f"{rng.choice(FIRST)} {rng.choice('ABCDEFGHJKLMNPRSTW')}.",
                vehicle,
                round(rng.uniform(4.2, 5.0), 2),
                round(rng.uniform(0.6, 1.0), 3),
                region.region,
                lng,
                lat,
            )
        )
        out.drivers.append({"driver_id": did, "vehicle_type": vehicle, "lat": lat, "lng": lng})

    async with shards.connection(region.region) as conn, conn.transaction():
        cur = conn.cursor()
        await cur.executemany(
            "INSERT INTO restaurants (restaurant_id, name, region, location, delivery_radius_m,"
            " prep_time_mean_s, prep_time_sd_s) VALUES (%s, %s, %s,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            rest_rows,
        )
        await cur.executemany(
            "INSERT INTO menu_items (item_id, restaurant_id, name, price) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            [row[:4] for row in item_rows],
        )
        await cur.executemany(
            "INSERT INTO inventory (item_id, quantity) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            [(row[0], row[4]) for row in item_rows],
        )
        await cur.executemany(
            "INSERT INTO customers (customer_id) VALUES (%s) ON CONFLICT DO NOTHING",
            [(c,) for c in out.customers],
        )
        await cur.executemany(
            "INSERT INTO drivers (driver_id, name, vehicle_type, rating, acceptance_rate, region,"
            " current_location, location_updated_at) VALUES (%s, %s, %s, %s, %s, %s,"
            " ST_SetSRID(ST_MakePoint(%s, %s), 4326)::geography, now())"
            " ON CONFLICT DO NOTHING",
            driver_rows,
        )
    return out
