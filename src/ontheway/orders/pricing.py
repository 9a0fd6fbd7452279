"""Prices with Decimal: subtotal, delivery fee and total. Pure: no I/O."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")
BASE_FEE = Decimal("1.99")
FEE_PER_KM = Decimal("0.50")
MAX_FEE = Decimal("9.99")


def money(value: Decimal) -> Decimal:
    """Round to cents, half up (as money is rounded on a receipt)."""
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def delivery_fee(distance_m: float) -> Decimal:
    """A base fee plus a rate per started tenth of a km of straight-line distance, capped."""
    tenths = Decimal(max(0, int(distance_m // 100)))
    return min(MAX_FEE, money(BASE_FEE + FEE_PER_KM * tenths / 10))


def subtotal(lines: list[tuple[Decimal, int]]) -> Decimal:
    """Sum of price times quantity over the lines."""
    return money(sum((price * quantity for price, quantity in lines), Decimal(0)))
