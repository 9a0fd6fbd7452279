"""``ontheway bench dispatch`` with tiny numbers: the real relay and dispatch workers, every
order assigned, the figures printed, and nothing left behind (database, keys, graph, stream)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import psycopg
import redis

from ontheway.settings import Settings


def test_bench_dispatch_assigns_every_order_prints_its_figures_and_cleans_up(
    settings: Settings,
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ontheway", "bench", "dispatch",
         "--drivers", "2000", "--rate", "20", "--seconds", "3", "--workers", "1",
         "--warmup", "1"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    # The warm-up's 20 orders (1 s at the rate, without a pause before the measured ones)
    # are not counted.
    assert "after 1 s at that rate not measured" in out, out
    assert "orders assigned / placed: 60 / 60 (0 failed)" in out, out
    latency = re.search(r"p50 ([\d.]+) ms, p90 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms", out)
    assert latency, out
    p50, p90, p99, top = (float(v) for v in latency.groups())
    assert 0 < p50 <= p90 <= p99 <= top
    rate = re.search(r"rate reached: ([\d.]+) orders/s placed, ([\d.]+)/s assigned", out)
    assert rate and float(rate.group(1)) > 10 and float(rate.group(2)) > 10, out
    # The CPU each order cost the processes: the relay's and the workers' apart from the
    # generator's and each other's.
    cpu = re.search(
        r"CPU per order \(ms, from /proc\): the generator \(placing\) ([\d.]+), postgres "
        r"([\d.]+), redis-server ([\d.]+), relay ([\d.]+), workers ([\d.]+); in all ([\d.]+)",
        out,
    )
    assert cpu, out
    assert all(float(cpu[i]) > 0 for i in (1, 2, 4, 5)), out
    region = re.search(r"\(region (benchd_[0-9a-f]{8}), removed\)", out)
    assert region, out
    admin = psycopg.conninfo.make_conninfo(
        settings.dsn_for("americas"), user="postgres", dbname="postgres"
    )
    with psycopg.connect(admin) as conn:
        left = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (f"ontheway_{region.group(1)}",)
        ).fetchone()
    assert left is None
    client = redis.Redis.from_url(settings.require_redis_url())
    try:
        assert not list(client.scan_iter(match=f"*{region.group(1)}*", count=10_000))
    finally:
        client.close()
