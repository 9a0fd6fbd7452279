"""The promise at placement: the route-based estimate (``roads.planning``) turned into legs,
corrected by the region's model, with its window. Made before the order's transaction, like
the route-based estimate; the restaurant's recent kitchen times and queue are read with its
location (one statement), the region's facts at most every few seconds (``RegionFacts``)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from ontheway.eta.estimator import EtaEstimator, stored_features
from ontheway.eta.facts import (
    KITCHEN_COLUMNS,
    RegionFacts,
    RestaurantFacts,
    kitchen_from_row,
    kitchen_params,
)
from ontheway.eta.features import Context, Legs, Stage
from ontheway.eta.registry import Registry
from ontheway.roads.planning import PlacementEta
from ontheway.settings import Settings

_REGISTRIES: dict[Path, Registry] = {}


def registry_for(root: Path) -> Registry:
    """One registry (one cache of loaded models) per folder and process."""
    found = _REGISTRIES.get(root)
    if found is None:
        found = _REGISTRIES[root] = Registry(root)
    return found


def placement_legs(eta: PlacementEta) -> Legs:
    """The route-based estimate's parts as legs (assigning takes no time in the baseline)."""
    legs = eta.legs
    if eta.method == "road":
        return Legs(0.0, float(legs["to_restaurant_s"]), float(legs["food_ready_s"]),
                    float(legs["pickup_service_s"]), float(legs["to_customer_s"]),
                    float(legs["dropoff_service_s"]))  # fmt: skip
    # The straight line: preparation, a hand-over allowance, the crow's distance at a speed.
    return Legs(0.0, 0.0, float(legs["prep_s"]), float(legs["handover_s"]),
                float(legs["to_customer_s"]), 0.0)  # fmt: skip


@dataclass
class PlacementLearner:
    """The learned promise of each new order."""

    estimator: EtaEstimator
    regions: RegionFacts

    @classmethod
    def for_settings(cls, settings: Settings) -> PlacementLearner:
        registry = registry_for(settings.eta_model_dir)
        return cls(EtaEstimator(registry, settings.time_scale), RegionFacts(settings.time_scale))

    def kitchen_query(
        self, columns: str, restaurant_id: str, region: str, now: datetime
    ) -> tuple[str, dict[str, Any]]:
        """A read of the restaurant's ``columns`` and its recent kitchen times and queue, in
        one statement (``columns`` may use ``%(r)s``, the restaurant's id), and its
        parameters."""
        sql = f"SELECT {columns}, {KITCHEN_COLUMNS} FROM restaurants WHERE restaurant_id = %(r)s"
        return sql, kitchen_params(restaurant_id, region, now, self.estimator.time_scale)

    async def kitchen(
        self,
        row: dict[str, Any],
        region: str,
        now: datetime,
        connection: Callable[[str], AbstractAsyncContextManager[Any]],
    ) -> RestaurantFacts:
        """The facts of a row read by ``kitchen_query``, with the region's (``RegionFacts``:
        read again at most every few seconds)."""
        return await self.regions.add_to(kitchen_from_row(row), region, now, connection)

    def learned(
        self, region: str, eta: PlacementEta, kitchen: RestaurantFacts, now: datetime
    ) -> PlacementEta:
        """The estimate with the model's correction and window (the baseline's without a
        model); its ``estimated_delivery`` is the promise."""
        ctx = Context(
            elapsed_s=0.0, restaurant_prep_recent_s=kitchen.prep_recent_s,
            restaurant_prep_n=kitchen.prep_n, restaurant_queue=kitchen.queue,
            confirmed_prep_s=None, driver_pace=None, driver_distance_m=None,
            drivers_near=eta.legs.get("drivers_near"),
            region_assign_recent_s=kitchen.assign_recent_s,
            region_waiting=kitchen.region_waiting, region_active=kitchen.region_active,
            traffic_to_restaurant=eta.legs.get("traffic_to_restaurant"),
            traffic_to_customer=eta.legs.get("traffic_to_customer"),
        )  # fmt: skip
        est = self.estimator.estimate(region, Stage.PLACEMENT, placement_legs(eta), ctx, now)
        stored = est.to_dict() | {"features": stored_features(est)}
        return replace(eta, estimated_delivery=est.estimated_delivery, estimate=stored)

    @staticmethod
    def public(eta: PlacementEta) -> dict[str, Any] | None:
        """What the customer's response shows of the estimate."""
        if eta.estimate is None:
            return None
        keep = ("estimated_delivery", "earliest", "latest", "method", "model_version", "note")
        return {k: eta.estimate[k] for k in keep}
