"""What a simulation run leaves behind for its report: ids, clocks and the simulator's own
counts. Pure: no I/O beyond reading and writing its JSON file.

The simulator writes one ``RunRecord`` (``run.json`` in the report directory); the report
reads it and takes everything else from the real servers (orders, events, consumers).
Simulated durations are wall durations times ``speed``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any


@dataclass
class RunRecord:
    """One simulation run: who took part, when, and what the simulator itself decided."""

    run_id: str
    seed: int
    regions: list[str]
    speed: float
    sim_start: datetime  # the simulated clock when the run began (e.g. 11:00 local time)
    wall_start: datetime  # UTC
    wall_end: datetime | None = None  # UTC
    drivers: dict[str, str] = field(default_factory=dict)  # driver id -> region
    restaurants: dict[str, str] = field(default_factory=dict)  # restaurant id -> region
    orders: list[str] = field(default_factory=list)  # ids of the orders placed
    orders_refused: int = 0  # placements the API refused (stock, zone)
    offers_accepted: int = 0
    offers_declined: int = 0
    offers_missed: int = 0  # offers left to expire
    drivers_went_offline: int = 0
    offline_mid_delivery: int = 0
    traffic_changes: int = 0
    # Added by the simulator (H5):
    offers_late: int = 0  # answers that arrived after the offer expired or was taken
    deliveries: int = 0  # orders the simulated drivers handed over (``/delivered`` 200)
    fixes_sent: int = 0  # fixes sent over ``/ws/driver`` (batched by the run's gateway)
    fixes_rejected: int = 0  # fixes the API answered with an error (gateway.py)
    fix_interval_s: float = 0.0  # wall seconds between a driver's fixes (4 sim-s if possible)
    fix_ticks: int = 0  # rounds of fixes sent (one fix per online driver each)
    fix_tick_max_s: float = 0.0  # the longest round (beyond ``fix_interval_s``: fixes lag)
    event_stream: str = ""  # the backend's event stream (a run of its own: ``sim_<run>``)
    api_url: str = ""
    backend_env: dict[str, str] = field(default_factory=dict)  # timeouts scaled to the speed
    planned_orders: int = 0  # orders the demand curve generated for the run's duration
    cancelled_at_end: int = 0  # orders still searching at the end, cancelled ("simulation ended")
    # Each driver that dropped off the network: {"driver_id", "at" (Unix s), "mid" (holding
    # an order)}; the server's offline monitor should record DRIVER_UNAVAILABLE after each.
    vanished: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def sim_seconds(self, wall_s: float) -> float:
        """Simulated seconds for a wall-clock duration."""
        return wall_s * self.speed

    def to_json(self) -> dict[str, Any]:
        """The record as JSON-ready data (times as RFC 3339)."""
        data = asdict(self)
        for key in ("sim_start", "wall_start", "wall_end"):
            value = data[key]
            data[key] = value.isoformat() if value is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        """The record back from ``to_json``'s output."""
        data = dict(data)
        for key in ("sim_start", "wall_start", "wall_end"):
            if data.get(key) is not None:
                data[key] = datetime.fromisoformat(data[key])
        return cls(**data)

    def save(self, path: Path) -> None:
        """Write the record as JSON."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        """Read a record written by ``save``."""
        return cls.from_json(json.loads(path.read_text()))
