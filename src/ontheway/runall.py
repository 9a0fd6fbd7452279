"""``ontheway run``: every part of ontheway on one machine, each in a process of its own as in
production — the API (which also runs the offline monitor), the outbox relay and one worker
per consumer — stopped together on Ctrl-C or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from rich.console import Console

from ontheway.events.consumers import consumer_names
from ontheway.smoke import api_process


async def run_all(port: int, host: str, console: Console) -> int:
    """Start everything; returns non-zero when a part exits on its own."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    parts: dict[str, asyncio.subprocess.Process] = {}
    try:
        async with api_process(port, host=host) as (base, api):
            parts["api"] = api
            parts["relay"] = await _start("relay")
            for name in consumer_names():
                parts[f"worker {name}"] = await _start("worker", "--consumer", name)
            console.print(
                f"ontheway is running: API {base} (docs {base}/docs); "
                f"{', '.join(parts)}. Ctrl-C to stop."
            )
            exited = asyncio.create_task(_first_exit(parts))
            await asyncio.wait(
                [exited, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED
            )
            if exited.done():
                name = exited.result()
                console.print(f"[red]{name} exited with code {parts[name].returncode}[/]")
                return 1
            exited.cancel()
            return 0
    finally:
        await stop_parts(parts)
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def _start(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(sys.executable, "-m", "ontheway", *args)


async def _first_exit(parts: dict[str, asyncio.subprocess.Process]) -> str:
    waits = {asyncio.create_task(p.wait()): name for name, p in parts.items()}
    done, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return waits[next(iter(done))]


async def stop_parts(parts: dict[str, asyncio.subprocess.Process]) -> None:
    """SIGTERM every part still running and wait for each (SIGKILL after 20 s)."""
    for proc in parts.values():
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
    for proc in parts.values():
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
