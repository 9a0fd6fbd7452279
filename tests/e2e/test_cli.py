import json
import os
from datetime import UTC, date, datetime
from pathlib import Path

import httpx
import pytest

from ontheway.auth import Role, decode_token
from ontheway.orders.store import ShardAccess
from ontheway.schema.partitions import (
    PARTITIONED_TABLES,
    attached_months,
    ensure_partitions,
    month_start,
    partition_name,
)
from ontheway.settings import Settings
from tests.e2e.conftest import Server
from tests.helpers import run_cli


@pytest.fixture
def empty_state(tmp_path: Path) -> dict[str, str]:
    """Environment for a CLI with no local stack and no settings at all."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONTHEWAY_")}
    env["ONTHEWAY_STATE_DIR"] = str(tmp_path / "state")
    return env


def test_token_prints_a_token_the_api_accepts(settings: Settings) -> None:
    result = run_cli("token", "--role", "ops", "--sub", "ops_1", "--regions", "sf,nyc")
    assert result.returncode == 0, result.stderr
    principal = decode_token(settings.jwt_key(), result.stdout.strip())
    assert principal.role is Role.OPS
    assert principal.regions == frozenset({"sf", "nyc"})


def test_token_with_an_unknown_role_fails_with_a_message(settings: Settings) -> None:
    result = run_cli("token", "--role", "admin", "--sub", "x_1")
    assert result.returncode == 2
    assert "admin" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_with_an_unknown_region_fails_with_a_message(settings: Settings) -> None:
    result = run_cli("token", "--role", "ops", "--sub", "ops_1", "--regions", "atlantis")
    assert result.returncode == 1
    assert "atlantis" in result.stderr
    assert "Traceback" not in result.stderr


def test_token_refuses_the_development_secret_outside_local_mode(
    empty_state: dict[str, str],
) -> None:
    result = run_cli("token", "--role", "ops", "--sub", "ops_1", env=empty_state, inherit=False)
    assert result.returncode == 1
    assert "ONTHEWAY_JWT_SECRET" in result.stderr
    assert result.stdout == ""


def test_serve_without_settings_names_the_missing_setting(empty_state: dict[str, str]) -> None:
    env = {**empty_state, "ONTHEWAY_LOCAL": "true"}
    result = run_cli("serve", env=env, inherit=False)
    assert result.returncode == 1
    assert "ONTHEWAY_SHARD_DSNS" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_setting_names_the_variable(empty_state: dict[str, str]) -> None:
    env = {**empty_state, "ONTHEWAY_API_PORT": "eighty"}
    result = run_cli("serve", env=env, inherit=False)
    assert result.returncode == 1
    assert "ONTHEWAY_API_PORT" in result.stderr


def test_a_missing_postgresql_is_one_message_naming_what_to_install(
    empty_state: dict[str, str],
) -> None:
    env = {**empty_state, "ONTHEWAY_STACK_PG_BINDIR": "/nonexistent/bin"}
    result = run_cli("stack", "up", env=env, inherit=False)
    assert result.returncode == 2
    assert "make setup" in result.stderr and "apt-get install" in result.stderr
    assert "Traceback" not in result.stderr


def test_db_migrate_leaves_a_current_shard_alone(settings: Settings) -> None:
    result = run_cli("db", "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("already current") == 3


def test_db_detach_refuses_a_malformed_month(settings: Settings) -> None:
    result = run_cli("db", "detach", "--before", "last-tuesday")
    assert result.returncode == 2
    assert "YYYY-MM" in result.stderr and "Traceback" not in result.stderr


async def test_db_detach_detaches_the_old_months_on_every_shard_and_keeps_their_tables(
    settings: Settings,
    shards: ShardAccess,
) -> None:
    # A month no other test uses, long before any order: only it is older than --before.
    old = date(2018, 5, 1)
    names = [partition_name(t, old) for t in PARTITIONED_TABLES]
    regions = {shards.catalog.shard_for(r.region): r.region for r in shards.catalog}
    try:
        for region in regions.values():
            async with shards.connection(region) as conn:
                created = await ensure_partitions(
                    conn, datetime(2018, 5, 15, tzinfo=UTC), months_ahead=0
                )
                assert sorted(created) == sorted(names), region
        result = run_cli("db", "detach", "--before", "2018-06")
        assert result.returncode == 0, result.stderr
        for name in names:  # once per shard (a long line may wrap, but not inside a name)
            assert result.stdout.count(name) == len(regions), result.stdout
        this_month = month_start(datetime.now(UTC).date())
        for region in regions.values():
            async with shards.connection(region) as conn:
                cur = await conn.execute(
                    "SELECT count(*) AS n FROM pg_inherits WHERE inhrelid = ANY("
                    "SELECT to_regclass(name) FROM unnest(%s::text[]) AS name)",
                    (names,),
                )
                row = await cur.fetchone()
                assert row is not None and row["n"] == 0, f"{region}: still attached"
                for name in names:
                    cur = await conn.execute("SELECT to_regclass(%s) AS t", (name,))
                    row = await cur.fetchone()
                    assert row is not None and row["t"] is not None, f"{region}: {name} gone"
                assert this_month in await attached_months(conn), f"{region}: month detached"
    finally:
        for region in regions.values():
            async with shards.connection(region) as conn:
                for table, name in zip(PARTITIONED_TABLES, names, strict=True):
                    # Still attached only when the command failed: detach before dropping,
                    # since an attached month's order table has foreign keys pointing at it.
                    cur = await conn.execute(
                        "SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(%s)", (name,)
                    )
                    if await cur.fetchone() is not None:
                        await conn.execute(f"ALTER TABLE {table} DETACH PARTITION {name}")
                    await conn.execute(f"DROP TABLE IF EXISTS {name}")


def test_seed_writes_the_ids_it_created(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "ids.json"
    result = run_cli(
        "seed",
        "--region",
        "monaco",
        "--restaurants",
        "3",
        "--customers",
        "2",
        "--drivers",
        "2",
        "--seed",
        str(os.getpid()),
        "--out",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    ids = json.loads(out.read_text())
    assert len(ids["restaurants"]) == 3 and len(ids["drivers"]) == 2
    assert all(r["restaurant_id"].startswith("rest_monaco_") for r in ids["restaurants"])
    assert all(len(r["items"]) == 5 for r in ids["restaurants"])


def test_seed_refuses_an_unknown_region(settings: Settings) -> None:
    result = run_cli("seed", "--region", "atlantis")
    assert result.returncode == 1
    assert "atlantis" in result.stderr and "Traceback" not in result.stderr


def test_the_server_logs_what_each_task_waits_on_when_sent_sigusr1(server: Server) -> None:
    log = server.diagnosis()
    for loop in ("offer-sweeper", "fleet-monitor", "dispatch-reconcile"):
        assert f"task {loop} of " in log, log
    assert "in run_sweeper" in log, log  # with the stack it is suspended at
    assert httpx.get(f"{server.base_url}/health", timeout=10).status_code == 200
