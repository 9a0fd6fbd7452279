"""The demo's smoke run: start the API as its own process, show it healthy, keep serving."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from rich.console import Console
from rich.table import Table

from ontheway.auth import Role, issue_token
from ontheway.settings import Settings


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
) -> AsyncIterator[tuple[str, asyncio.subprocess.Process]]:
    """``ontheway serve`` in a process of its own (with ``env`` if given), healthy when
    entered, stopped on exit; yields its base URL and the process."""
    out = asyncio.subprocess.DEVNULL if quiet else None
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ontheway", "serve", "--host", host, "--port", str(port),
        stdout=out, stderr=out, env=env,
    )  # fmt: skip
    base = f"http://{host}:{port}"
    try:
        await wait_healthy(base, proc, 60)
        yield base, proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await proc.wait()


async def run_smoke(
    settings: Settings, port: int, duration_s: float | None, console: Console
) -> int:
    """Serve the API on ``port``, print where it is and each dependency's state."""
    try:
        async with api_process(port, host=settings.api_host) as (base, proc):
            return await _show(settings, base, proc, duration_s, console)
    except RuntimeError as exc:
        console.print(f"[red]demo failed:[/] {exc}")
        return 1


async def _show(
    settings: Settings,
    base: str,
    proc: asyncio.subprocess.Process,
    duration_s: float | None,
    console: Console,
) -> int:
    """Print the dependencies, where the API is and a token; serve for ``duration_s``."""
    ops = issue_token(settings.jwt_key(), Role.OPS, "ops_demo", ttl_s=3600)
    async with httpx.AsyncClient(timeout=10) as client:
        deps = (
            await client.get(
                f"{base}/api/ops/dependencies", headers={"Authorization": f"Bearer {ops}"}
            )
        ).json()
    table = Table("dependency", "healthy", "version", "latency ms")
    for dep in deps:
        table.add_row(
            dep["name"],
            "yes" if dep["ok"] else "[red]no[/]",
            dep["version"] or "-",
            f"{dep['latency_ms']:.1f}",
        )
    console.print(table)
    console.print(f"API: [bold]{base}[/]   docs: {base}/docs   health: {base}/health")
    console.print(f"ops token (1 h): {ops}")
    if duration_s is None:
        console.print("serving; Ctrl-C to stop")
        await proc.wait()
    else:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), duration_s)
    return 0 if all(dep["ok"] for dep in deps) else 1
