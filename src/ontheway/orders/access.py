"""Who may see or act on an order. Pure: no I/O."""

from __future__ import annotations

from typing import Any

from ontheway.auth import Principal, Role
from ontheway.errors import Forbidden


def require_view(principal: Principal, order: dict[str, Any]) -> None:
    """Its customer, its restaurant, its assigned driver, or ops of its region."""
    allowed = {
        Role.CUSTOMER: order["customer_id"] == principal.sub,
        Role.RESTAURANT: order["restaurant_id"] == principal.sub,
        Role.DRIVER: order["driver_id"] is not None and order["driver_id"] == principal.sub,
        Role.OPS: principal.regions is None or order["region"] in principal.regions,
    }[principal.role]
    if not allowed:
        raise Forbidden("this order is not yours", field="order_id")


def require_customer_or_ops(principal: Principal, order: dict[str, Any]) -> None:
    """The order's own customer, or ops of its region."""
    principal.require_role(Role.CUSTOMER, Role.OPS)
    require_view(principal, order)


def require_assigned_driver(principal: Principal, order: dict[str, Any]) -> None:
    """The driver the order is assigned to."""
    principal.require_role(Role.DRIVER)
    if order["driver_id"] != principal.sub:
        raise Forbidden("this order is not assigned to you", field="order_id")


def require_own_restaurant(principal: Principal, order: dict[str, Any]) -> None:
    """The restaurant that the order is from."""
    principal.require_role(Role.RESTAURANT)
    if order["restaurant_id"] != principal.sub:
        raise Forbidden("this order is not from your restaurant", field="order_id")
