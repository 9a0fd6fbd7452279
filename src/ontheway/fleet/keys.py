"""Redis key and channel names of the fleet. Pure: no I/O.

Every key of a region's live state carries the region as a hash tag, so one Lua script may
touch several of them and still run on a Redis Cluster, where a region lives on one slot:

    drivers:locations:{sf}               GEO set: every driver's last position in the region
    drivers:heartbeats:{sf}              sorted set: driver -> when its heartbeat expires (s)
    drivers:fixes_applied:{sf}           counter of fixes stored (for operators, benchmarks)
    drivers:last_fix:{sf}                hash: driver -> time of its last fix stored (s)
    drivers:carrying:{sf}                set: drivers holding orders (an index: no key scan)
    drivers:unavailable_pending:{sf}     sorted set: expired drivers holding orders, until
                                         their DRIVER_UNAVAILABLE events are recorded
    driver:{sf}:drv_001:status           "available" | "busy", EX heartbeat TTL (gone = offline)
    driver:{sf}:drv_001:profile          hash: vehicle_type, status wanted, orders (count),
                                         rating, acceptance_rate
    driver:{sf}:drv_001:active_orders    set of order ids
    order:{sf}:ord_...:assignment_lock   owner token, SET NX EX 30

One key is per driver instead, tagged by the driver id (its own slot):

    driver_home:{drv_001}                hash: the driver's region and registration

The pub/sub channel of an order's tracking is ``order:ord_...:driver_location``; a user's
inbox (offers, route updates, notifications for whichever socket they have open) is
``inbox:<user id>``.
"""

from __future__ import annotations


def tag(region: str) -> str:
    """The hash tag of a region's keys."""
    return "{" + region + "}"


def locations(region: str) -> str:
    return f"drivers:locations:{{{region}}}"


def heartbeats(region: str) -> str:
    return f"drivers:heartbeats:{{{region}}}"


def fixes_applied(region: str) -> str:
    return f"drivers:fixes_applied:{{{region}}}"


def last_fix(region: str) -> str:
    """When each driver's last stored fix was taken: ingest refuses older ones (stale)."""
    return f"drivers:last_fix:{{{region}}}"


def carrying(region: str) -> str:
    """The drivers of a region whose active-order set is not empty (a superset: an entry may
    outlive its last order until ``FORGET_IDLE``), kept by the capacity scripts: the
    reservation reconciler reads it instead of scanning every key, and ingest asks it which
    fixes go to tracking channels."""
    return f"drivers:carrying:{{{region}}}"


def unavailable_pending(region: str) -> str:
    """Drivers whose heartbeat expired holding orders, until DRIVER_UNAVAILABLE is recorded."""
    return f"drivers:unavailable_pending:{{{region}}}"


def driver_prefix(region: str) -> str:
    """What every per-driver key of the region starts with (the Lua scripts append id:kind)."""
    return f"driver:{{{region}}}:"


def status(region: str, driver_id: str) -> str:
    return f"driver:{{{region}}}:{driver_id}:status"


def profile(region: str, driver_id: str) -> str:
    return f"driver:{{{region}}}:{driver_id}:profile"


def active_orders(region: str, driver_id: str) -> str:
    return f"driver:{{{region}}}:{driver_id}:active_orders"


def assignment_lock(region: str, order_id: str) -> str:
    return f"order:{{{region}}}:{order_id}:assignment_lock"


def home(driver_id: str) -> str:
    return f"driver_home:{{{driver_id}}}"


def tracking_channel(order_id: str) -> str:
    """The channel on which an order's driver positions and status changes are published."""
    return f"order:{order_id}:driver_location"


def inbox_channel(recipient: str) -> str:
    """The channel of a user's live messages (a driver's offers, anyone's notifications)."""
    return f"inbox:{recipient}"
