"""A real API server in its own process, on a free port, against the local stack."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from ontheway.auth import Role, issue_token
from ontheway.bench.common import free_port
from ontheway.settings import Settings


@dataclass
class Server:
    base_url: str
    proc: subprocess.Popen[bytes]
    settings: Settings

    def token(self, role: Role, sub: str, **kwargs: object) -> str:
        return issue_token(self.settings.jwt_key(), role, sub, **kwargs)  # type: ignore[arg-type]

    def auth(self, role: Role, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub)}"}

    def report_position(self, driver: str, lat: float, lng: float) -> None:
        """The driver's app reports a position, which makes the driver online."""
        resp = httpx.post(
            f"{self.base_url}/api/driver/location",
            json={"driver_id": driver, "lat": lat, "lng": lng, "timestamp": time.time()},
            headers=self.auth(Role.DRIVER, driver),
        )
        assert resp.status_code == 202, resp.text


def start_server(
    extra_env: dict[str, str] | None = None,
    expect_status: int = 200,
    args: tuple[str, ...] = (),
) -> tuple[str, subprocess.Popen[bytes]]:
    """Start ``ontheway serve`` and wait until ``/health`` answers ``expect_status``."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ontheway", "serve", "--port", str(port), *args],
        env={**os.environ, **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}"
            )
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == expect_status:
                return base, proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("server did not come up")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    if proc.stderr:
        proc.stderr.close()


@pytest.fixture(scope="session")
def server(settings: Settings) -> Iterator[Server]:
    """The API, serving the local stack."""
    base, proc = start_server()
    yield Server(base, proc, settings)
    stop_server(proc)
