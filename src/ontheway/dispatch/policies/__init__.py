"""Dispatch policies: from open orders and drivers to assignments, pure (no I/O).

``greedy`` is the seed's choice (the best free driver for each order, now); ``batched``
bundles orders of one restaurant and solves one assignment for all every few minutes.
Both share one interface: ``decide(now, orders, drivers, travel, service)`` returns the
assignments to start now, called every ``interval_min`` minutes of simulated time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ontheway.dispatch.policies.batched import BatchedPolicy
from ontheway.dispatch.policies.greedy import GreedyPolicy
from ontheway.dispatch.policies.model import (
    Assignment,
    Driver,
    EuclideanTravel,
    OpenOrder,
    Point,
    Service,
    TravelTime,
    minutes,
    plan_route,
)

__all__ = [
    "POLICIES",
    "Assignment",
    "BatchedPolicy",
    "Driver",
    "EuclideanTravel",
    "GreedyPolicy",
    "OpenOrder",
    "Point",
    "Policy",
    "Service",
    "TravelTime",
    "make_policy",
    "minutes",
    "plan_route",
]

POLICIES = ("greedy", "batched")


class Policy(Protocol):
    """A dispatch policy: a name, how often it decides, and the decision."""

    @property
    def name(self) -> str:
        """The policy's name."""
        ...

    @property
    def interval_min(self) -> int:
        """Minutes between two decisions."""
        ...

    def decide(
        self,
        now: int,
        orders: Sequence[OpenOrder],
        drivers: Sequence[Driver],
        travel: TravelTime,
        service: Service,
    ) -> list[Assignment]:
        """The assignments to start now; every driver free now at most once."""
        ...


def make_policy(name: str, interval_min: int | None = None) -> Policy:
    """The policy of that name (``greedy`` or ``batched``), optionally with its own interval."""
    if name == "greedy":
        return GreedyPolicy() if interval_min is None else GreedyPolicy(interval_min=interval_min)
    if name == "batched":
        return BatchedPolicy() if interval_min is None else BatchedPolicy(interval_min=interval_min)
    raise ValueError(f"unknown policy {name!r}: one of {', '.join(POLICIES)}")
