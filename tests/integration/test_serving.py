"""Long-running processes (the API, the relay and workers) start and stop, in this process."""

import asyncio
import gc

from ontheway import collector
from ontheway.api.app import create_app
from ontheway.connections import Connections
from ontheway.runner import run_until_signalled
from ontheway.settings import Settings


async def test_the_app_runs_with_its_collector_settings_and_gives_them_back(
    settings: Settings,
) -> None:
    before = gc.get_threshold()
    assert before != collector.THRESHOLDS and gc.get_freeze_count() == 0
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert gc.get_threshold() == collector.THRESHOLDS
        assert gc.get_freeze_count() > 0  # what start-up built is out of the full passes
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


async def test_the_relay_and_workers_run_with_the_collector_set_and_give_it_back(
    settings: Settings,
) -> None:
    seen: list[tuple[int, ...]] = []

    async def main(conns: Connections, stop: asyncio.Event) -> None:
        assert conns.redis is not None
        seen.append(gc.get_threshold())

    before = gc.get_threshold()
    await run_until_signalled(settings, main, shards=["americas"])
    assert seen == [collector.THRESHOLDS]
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
