"""What every task of a process is waiting on, logged on ``SIGUSR1`` (``kill -USR1 PID``).

A background loop (the offer sweeper, the offline monitor) that stops acting is most often
stuck on an await; its stack names the await. The API installs this for its lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import signal
from collections.abc import Iterator

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
