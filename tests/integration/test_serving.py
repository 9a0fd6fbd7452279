"""Long-running processes (the API, the relay and workers) start and stop, in this process."""

import asyncio
import gc

import pytest

from ontheway import collector, runner
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


def test_our_processes_run_on_uvloop_with_postgres_redis_and_falkordb(settings: Settings) -> None:
    """``runner.run`` (every command, the relay, the workers, the benchmarks): the loop is
    uvloop's, and each server's client does its round trips on it."""

    async def main(conns: Connections, stop: asyncio.Event) -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)
        async with conns.shard_connection("americas") as conn:
            cur = await conn.execute("SELECT 41 + 1 AS answer")
            seen.append((await cur.fetchone())["answer"])
        seen.append(await conns.require_redis().ping())
        assert conns.graphs is not None
        db = await conns.graphs.db()
        seen.append(isinstance(await db.list_graphs(), list))

    seen: list[object] = []
    runner.run(run_until_signalled(settings, main, shards=["americas"]))
    assert seen == ["uvloop", 42, True, True]


def test_runner_run_gives_back_what_main_returns_or_raises() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    async def fail() -> None:
        raise ValueError("bad input")

    assert runner.run(answer()) == 42
    with pytest.raises(ValueError, match="bad input"):
        runner.run(fail())
