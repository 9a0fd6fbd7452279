"""Background tasks: what every task of a process is waiting on, logged on ``SIGUSR1``
(``kill -USR1 PID``); and stopping tasks at shutdown within a time limit (``stop``).

A background loop (the offer sweeper, the offline monitor) that stops acting is most often
stuck on an await; its stack names the await. The API installs the signal for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import Iterable, Iterator
from typing import Any

log = logging.getLogger(__name__)


def log_tasks() -> None:
    """Log each task of the running loop with the stack it is suspended at."""
    tasks = asyncio.all_tasks()
    for task in sorted(tasks, key=lambda t: t.get_name()):
        stack = io.StringIO()
        task.print_stack(file=stack)
        log.warning("task %s of %d: %s", task.get_name(), len(tasks), stack.getvalue())


@contextlib.contextmanager
def tasks_logged_on_signal(signum: int = signal.SIGUSR1) -> Iterator[None]:
    """Log the tasks on ``signum`` while the context lasts. Outside the main thread (where
    a loop cannot take signals) nothing is installed, which is logged."""
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signum, log_tasks)
    except (RuntimeError, ValueError) as exc:
        log.info("no task dump on signal %d: %s", signum, exc)
        yield
        return
    try:
        yield
    finally:
        loop.remove_signal_handler(signum)


STOP_LIMIT_S = 5.0
"""How long ``stop`` waits for a cancelled task to end before leaving it behind."""


async def stop(tasks: Iterable[asyncio.Task[Any]], limit_s: float = STOP_LIMIT_S) -> None:
    """Cancel ``tasks`` and wait up to ``limit_s`` for them to end. A task still running then
    (stuck on an await that ignores cancellation) is logged with its stack and left behind,
    and so is a failure of one: a shutdown goes on. Unlike ``cancel(); await task`` under
    ``suppress(CancelledError)``, this neither hangs on such a task nor swallows a
    cancellation of the caller itself (which is what bounds a shutdown step in time)."""
    tasks = list(tasks)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, pending = await asyncio.wait(tasks, timeout=limit_s)
    for task in pending:
        stack = io.StringIO()
        task.print_stack(file=stack)
        log.error("task %s did not stop within %.0f s; left behind: %s",
                  task.get_name(), limit_s, stack.getvalue())  # fmt: skip
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed: %r", task.get_name(), task.exception())
