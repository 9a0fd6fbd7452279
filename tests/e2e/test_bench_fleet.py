"""``ontheway bench fleet`` with tiny numbers: both ingest modes store fixes through the real API
and Redis, the searches answer, the CPU of each part is printed, and no key is left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import redis

from ontheway.settings import Settings


def bench_keys(client: redis.Redis) -> int:
    """Keys of the benchmark's regions (``{bench_<hex>}``) and drivers (``{bbench...}``)."""
    return sum(1 for _ in client.scan_iter(match="*{bench_*", count=10_000)) + sum(
        1 for _ in client.scan_iter(match="driver_home:{b*_*}", count=10_000)
    )


def test_bench_fleet_stores_both_modes_prints_cpu_per_fix_and_cleans_up(
    settings: Settings,
) -> None:
    client = redis.Redis.from_url(settings.require_redis_url())
    try:
        before = bench_keys(client)
        result = subprocess.run(
            [sys.executable, "-m", "ontheway", "bench", "fleet", "--no-history",
             "--drivers", "2000", "--seconds", "2", "--rate", "4000", "--connections", "4"],
            capture_output=True, text=True, timeout=240, env={**os.environ, "COLUMNS": "250"},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        # The suite's stack, started by `stack up` with these settings.
        assert f"Redis's malloc: {settings.stack_redis_allocator};" in out
        stored = re.findall(r"ingest over WS /ws/driver into Redis: ([\d,]+) fixes/s", out)
        assert len(stored) == 2, out
        assert all(float(n.replace(",", "")) > 500 for n in stored), out
        assert len(re.findall(r"during that ingest: p50 [\d.]+ ms, p99 [\d.]+ ms", out)) == 2
        # Every fix stored cost the API and Redis some CPU, read from /proc per mode.
        cpu = re.findall(
            r"CPU per fix stored \(µs, from /proc\): this process ([\d.]+), the API ([\d.]+), "
            r"Redis ([\d.]+), the generator ([\d.]+)",
            out,
        )
        assert len(cpu) == 2, out
        assert all(float(api) > 0 and float(red) > 0 for _, api, red, _ in cpu), out
        assert bench_keys(client) == before
    finally:
        client.close()
