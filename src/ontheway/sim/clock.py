"""The simulated clock and the parsing of the simulator's time options.

Simulated time runs ``speed`` times faster than the wall clock: a sim-second lasts
``1 / speed`` wall seconds. Every agent sleeps on the one ``SimClock`` of the run, so that the
whole city shares one notion of "now". Times sent to the servers stay wall-clock (Unix
seconds): the servers know nothing of the simulation.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")
_START = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class BadTime(ValueError):
    """A duration or clock time that cannot be read."""


def parse_duration_s(text: str) -> float:
    """Seconds of ``2h``, ``90m``, ``1h30m``, ``45s`` or a bare number of seconds."""
    text = text.strip().lower()
    try:
        return float(text)
    except ValueError:
        pass
    match = _DURATION.match(text)
    if not text or match is None or not any(match.groups()):
        raise BadTime(f"{text!r} is not a duration like 2h, 90m, 1h30m or 45s")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def parse_start(text: str, day: datetime) -> datetime:
    """``HH:MM`` on ``day`` (the simulated clock's start, local time of the region)."""
    match = _START.match(text.strip())
    if match is None:
        raise BadTime(f"{text!r} is not a time of day like 11:00")
    return day.replace(hour=int(match.group(1)), minute=int(match.group(2)), second=0,
                       microsecond=0)  # fmt: skip


@dataclass
class SimClock:
    """Simulated time, ``speed`` times the wall clock, starting at ``sim_start``."""

    speed: float
    sim_start: datetime
    wall0: float = field(default_factory=time.monotonic)

    def elapsed_sim_s(self) -> float:
        """Simulated seconds since the start."""
        return (time.monotonic() - self.wall0) * self.speed

    def now(self) -> datetime:
        """The simulated time of day."""
        return self.sim_start + timedelta(seconds=self.elapsed_sim_s())

    def hour_of_day(self, sim_s: float | None = None) -> float:
        """The simulated hour (0-24, fractional) now or ``sim_s`` seconds after the start."""
        at = self.sim_start + timedelta(seconds=self.elapsed_sim_s() if sim_s is None else sim_s)
        return at.hour + at.minute / 60 + at.second / 3600

    def wall_s(self, sim_s: float) -> float:
        """Wall seconds that ``sim_s`` simulated seconds take."""
        return sim_s / self.speed

    async def sleep(self, sim_s: float) -> None:
        """Wait ``sim_s`` simulated seconds."""
        await asyncio.sleep(max(0.0, sim_s) / self.speed)

    async def sleep_until(self, sim_s: float) -> None:
        """Wait until ``sim_s`` simulated seconds after the start."""
        await asyncio.sleep(max(0.0, sim_s - self.elapsed_sim_s()) / self.speed)
