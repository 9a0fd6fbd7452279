"""An ontheway process of its own for a command that serves the API (``serve``, ``run``),
started and waited for until healthy: used by ``ontheway run``, the simulator and benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import IO

import httpx

# A server told to stop gets this long to finish (its shutdown steps log what is slow).
STOP_GRACE_S = 45.0


async def wait_healthy(
    base_url: str,
    proc: asyncio.subprocess.Process,
    timeout_s: float,
) -> httpx.Response:
    """Poll ``/health`` until it answers 200; fail if the server exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    async with httpx.AsyncClient(timeout=5) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"the API exited with code {proc.returncode}")
            try:
                resp = await client.get(f"{base_url}/health")
                if resp.status_code == 200:
                    return resp
                last = resp.text
            except httpx.TransportError as exc:
                last = str(exc)
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the API was not healthy within {timeout_s:.0f} s: {last}")


@asynccontextmanager
async def api_process(
    port: int,
    *,
    host: str = "127.0.0.1",
    quiet: bool = False,
    env: dict[str, str] | None = None,
    command: str = "serve",
    log: IO[bytes] | None = None,
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``ontheway serve`` (or another ``command`` taking --host and --port, e.g. ``run``) in a
    process of its own (with ``env`` if given; output to ``log`` if given), healthy when
    entered, stopped on exit; yields its base URL and the process."""
    out: IO[bytes] | int | None = asyncio.subprocess.DEVNULL if quiet else log
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ontheway", command, "--host", host, "--port", str(port),
        stdout=out, stderr=asyncio.subprocess.STDOUT if log else out, env=env,
    )  # fmt: skip
    base = f"http://{host}:{port}"
    try:
        await wait_healthy(base, proc, 60)
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
            except TimeoutError:  # stuck in its shutdown: its log says where (app.py)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
