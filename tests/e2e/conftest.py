"""A real API server in its own process, on a free port, against the local stack."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import httpx
import pytest

from ontheway.auth import Role, issue_token
from ontheway.bench.common import free_port
from ontheway.settings import Settings

# Each running server's log file, by process id.
_LOGS: dict[int, IO[bytes]] = {}


@dataclass
class Server:
    base_url: str
    proc: subprocess.Popen[bytes]
    settings: Settings

    def token(self, role: Role, sub: str, **kwargs: object) -> str:
        return issue_token(self.settings.jwt_key(), role, sub, **kwargs)  # type: ignore[arg-type]

    def auth(self, role: Role, sub: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role, sub)}"}

    def diagnosis(self) -> str:
        """For a failure's message: the end of the server's log, after the server logged
        what each of its tasks is waiting on (``SIGUSR1``)."""
        self.proc.send_signal(signal.SIGUSR1)
        time.sleep(1.0)
        return server_log(self.proc)[-20_000:]

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
    """Start ``ontheway serve`` and wait until ``/health`` answers ``expect_status``.

    Its log goes to a file, not a pipe: a pipe nobody reads fills up and blocks the server.
    It runs in a session of its own, so that stopping it stops its worker processes too."""
    port = free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop_server)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ontheway", "serve", "--port", str(port), *args],
        env={**os.environ, **(extra_env or {})},
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,
    )
    _LOGS[proc.pid] = log
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {server_log(proc)}")
        try:
            if httpx.get(f"{base}/health", timeout=5).status_code == expect_status:
                return base, proc
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    stop_server(proc)
    raise RuntimeError("server did not come up")


def server_log(proc: subprocess.Popen[bytes]) -> str:
    """What the server wrote to its log so far."""
    log = _LOGS.get(proc.pid)
    if log is None:
        return ""
    log.seek(0)
    return log.read().decode(errors="replace")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL for the whole process group after 10 s; always reaped."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    log = _LOGS.pop(proc.pid, None)
    if log is not None:
        log.close()


@pytest.fixture(scope="package")
def server(settings: Settings) -> Iterator[Server]:
    """The API, serving the local stack; stopped once the end-to-end tests are done, so
    that its dispatcher, sweepers and monitors do not act on the orders and drivers of the
    tests that follow (they expect no process of the stack but their own)."""
    base, proc = start_server()
    yield Server(base, proc, settings)
    stop_server(proc)
