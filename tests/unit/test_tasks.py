"""Stopping background tasks: bounded in time, and never swallowing the caller's cancellation."""

import asyncio
import logging
import time

import pytest

from ontheway import tasks


async def _stubborn(release: asyncio.Event) -> None:
    """A task stuck on an await that ignores cancellation, until ``release``."""
    while True:
        try:
            await release.wait()
            return
        except asyncio.CancelledError:
            continue


async def test_stopped_tasks_end_cancelled() -> None:
    running = [asyncio.create_task(asyncio.sleep(3600), name=f"sleeper-{i}") for i in range(3)]
    await tasks.stop(running)
    assert all(task.cancelled() for task in running)


async def test_a_task_that_ignores_cancellation_is_left_behind_and_named(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    stuck = asyncio.create_task(_stubborn(release), name="stuck-one")
    await asyncio.sleep(0)  # into its loop
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="ontheway.tasks"):
        await tasks.stop([stuck], limit_s=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    assert not stuck.done()
    assert "stuck-one did not stop within" in caplog.text and "_stubborn" in caplog.text
    release.set()
    await stuck


async def test_a_failed_task_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def fail() -> None:
        raise RuntimeError("broken writer")

    failed = asyncio.create_task(fail(), name="writer")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="ontheway.tasks"):
        await tasks.stop([failed])
    assert "writer failed: RuntimeError('broken writer')" in caplog.text


async def test_stopping_does_not_swallow_a_cancellation_of_the_caller() -> None:
    """A shutdown step under a time limit (``asyncio.wait_for``) must end at that limit even
    when what it stops hangs: the caller's own cancellation goes through."""
    release = asyncio.Event()
    stuck = asyncio.create_task(_stubborn(release), name="stuck-two")
    await asyncio.sleep(0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(tasks.stop([stuck], limit_s=30), 0.2)
    assert time.monotonic() - started < 2
    release.set()
    await stuck
