"""The report of a simulation run: everything about its orders read back from the servers
(rows, events, consumers' marks, payouts on each order's shard; drivers' homes in Redis),
turned into figures (``summary``, ``figures``) and written as text, HTML and JSON.

    build_report(conns, catalog, record) -> Report
    write_report(report, out_dir) -> (report.txt, report.html)   (and report.json)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from rich.console import Console

from ontheway.connections import Connections
from ontheway.errors import InvalidInput, NotFound
from ontheway.fleet import keys
from ontheway.orders.ids import region_of
from ontheway.orders.store import ORDER_SELECT, Conn
from ontheway.regions import Catalog, load_catalog
from ontheway.settings import Settings
from ontheway.sim.figures import OrderFacts, audit, hourly
from ontheway.sim.plots import write_html
from ontheway.sim.record import RunRecord
from ontheway.sim.summary import Report, drivers_of, group_figures, mixing_problems, render_text

__all__ = ["Report", "build_report", "load_record", "report_run", "write_report"]

UNKNOWN = "?"  # the region of an id that names none


@dataclass
class RunData:
    """What the servers hold about a run's orders."""

    orders: list[OrderFacts]
    elsewhere: dict[str, list[str]] = field(default_factory=dict)  # order -> other shards
    db_regions: dict[str, str] = field(default_factory=dict)  # restaurant/driver -> region
    consumers: dict[str, dict[str, int]] = field(default_factory=dict)
    payouts: int = 0
    payout_total: Decimal = Decimal(0)


def _region(order_id: str, catalog: Catalog) -> str:
    try:
        region = region_of(order_id, "ord")
    except NotFound:
        return UNKNOWN
    return region if region in catalog else UNKNOWN


async def _read_shard(conn: Conn, ids: list[str], data: RunData) -> dict[str, OrderFacts]:
    """The rows and events of ``ids`` on one shard, with the consumers' marks and payouts."""
    cur = await conn.execute(ORDER_SELECT + " WHERE o.order_id = ANY(%s)", (ids,))
    found = {r["order_id"]: OrderFacts(r["order_id"], r["region"], r) for r in await cur.fetchall()}
    cur = await conn.execute(
        "SELECT order_id, event_id, event_type, ts, data, actor FROM order_events"
        " WHERE order_id = ANY(%s) ORDER BY order_id, ts, seq",
        (ids,),
    )
    event_ids = []
    for e in await cur.fetchall():
        if e["order_id"] in found:
            found[e["order_id"]].events.append(e)
            event_ids.append(e["event_id"])
    for table, kind in (("processed_events", "handled"), ("consumer_failures", "failed")):
        cur = await conn.execute(
            f"SELECT consumer, count(*) AS n FROM {table} WHERE event_id = ANY(%s)"
            " GROUP BY consumer",
            (event_ids,),
        )
        for r in await cur.fetchall():
            counts = data.consumers.setdefault(r["consumer"], {"handled": 0, "failed": 0})
            counts[kind] += r["n"]
    cur = await conn.execute(
        "SELECT count(*) AS n, coalesce(sum(payout), 0) AS total FROM driver_payouts"
        " WHERE order_id = ANY(%s)",
        (ids,),
    )
    paid = await cur.fetchone()
    assert paid is not None
    data.payouts += paid["n"]
    data.payout_total += paid["total"]
    facts = list(found.values())
    restaurants = sorted({str(o.row["restaurant_id"]) for o in facts if o.row is not None})
    cur = await conn.execute(
        "SELECT restaurant_id AS id, region FROM restaurants WHERE restaurant_id = ANY(%s)"
        " UNION ALL SELECT driver_id, region FROM drivers WHERE driver_id = ANY(%s)",
        (restaurants, sorted(drivers_of(facts))),
    )
    data.db_regions.update({r["id"]: r["region"] for r in await cur.fetchall()})
    return found


async def fetch_run(conns: Connections, catalog: Catalog, order_ids: Sequence[str]) -> RunData:
    """Read every order of the run from the shard of its region, and look for copies of it
    on the other shards."""
    by_shard: dict[str, list[str]] = {shard: [] for shard in catalog.shards()}
    regions = {oid: _region(oid, catalog) for oid in order_ids}
    for oid, region in regions.items():
        if region != UNKNOWN:
            by_shard[catalog.shard_for(region)].append(oid)
    data = RunData(orders=[])
    found: dict[str, OrderFacts] = {}
    for shard, ids in by_shard.items():
        others = [oid for oid in regions if oid not in set(ids)]
        async with conns.shard_connection(shard) as conn:
            if ids:
                found.update(await _read_shard(conn, ids, data))
            if others:
                cur = await conn.execute(
                    "SELECT DISTINCT order_id FROM orders WHERE order_id = ANY(%s)", (others,)
                )
                for r in await cur.fetchall():
                    data.elsewhere.setdefault(r["order_id"], []).append(shard)
    data.orders = [found.get(oid) or OrderFacts(oid, regions[oid], None) for oid in order_ids]
    return data


async def driver_homes(conns: Connections, drivers: Sequence[str]) -> dict[str, str]:
    """Each driver's home region as the fleet registered it in Redis (absent: unknown)."""
    if conns.redis is None or not drivers:
        return {}
    pipe = conns.redis.pipeline(transaction=False)
    for driver in drivers:
        pipe.hget(keys.home(driver), "region")
    values = await pipe.execute()
    return {
        d: v.decode() if isinstance(v, bytes) else str(v)
        for d, v in zip(drivers, values, strict=True)
        if v is not None
    }


async def build_report(conns: Connections, catalog: Catalog, record: RunRecord) -> Report:
    """Read the run's orders back from the servers and compute the report."""
    data = await fetch_run(conns, catalog, record.orders)
    homes = await driver_homes(conns, sorted(drivers_of(data.orders)))
    stamps = [e["ts"] for o in data.orders for e in o.events]
    start = min(stamps, default=record.wall_start)
    end = record.wall_end or max(stamps, default=datetime.now(UTC))
    figures, series = group_figures(data.orders, list(record.drivers), (start, end), record.speed)
    per_region = {}
    regions = sorted({*record.regions, *(o.region for o in data.orders)})
    if len(regions) > 1:
        for region in regions:
            mine = [o for o in data.orders if o.region == region]
            drivers = [d for d, r in record.drivers.items() if r == region]
            per_region[region] = group_figures(mine, drivers, (start, end), record.speed)[0]
    simulator = {
        k: v for k, v in record.to_json().items() if isinstance(v, int | float) and k != "seed"
    }
    return Report(
        run_id=record.run_id,
        speed=record.speed,
        regions=record.regions,
        figures=figures,
        per_region=per_region,
        consumers=dict(sorted(data.consumers.items())),
        payouts={"orders": data.payouts, "total": str(data.payout_total)},
        audit=audit(data.orders),
        mixing={
            "checked": len(data.orders),
            "problems": mixing_problems(
                data.orders, record, data.db_regions, homes, data.elsewhere
            ),
        },
        hourly=hourly(data.orders, record.sim_start, start, record.speed),
        series=series,
        simulator=simulator,
    )


def write_report(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write report.txt, report.html (plots embedded) and report.json into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = render_text(report)
    text_path, html_path = out_dir / "report.txt", out_dir / "report.html"
    text_path.write_text(text)
    write_html(report, text, html_path)
    (out_dir / "report.json").write_text(json.dumps(report.to_json(), indent=1, default=str))
    return text_path, html_path


def load_record(path: Path) -> RunRecord:
    """The run record at ``path``; ``InvalidInput`` naming the problem if missing or bad."""
    if not path.is_file():
        raise InvalidInput(f"no run record at {path}", field="run.json", code="missing_run")
    try:
        return RunRecord.load(path)
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(
            f"{path} is not a run record: {exc}", field="run.json", code="invalid_run"
        ) from None


async def report_run(settings: Settings, run_json: Path, console: Console) -> Report:
    """Build and write the report of the run recorded at ``run_json``, beside it, and print
    its summary with the paths."""
    record = load_record(run_json)
    catalog = load_catalog(settings.region_catalog)
    conns = await Connections.open(settings, shards=catalog.shards(), pool_max=2)
    try:
        report = await build_report(conns, catalog, record)
    finally:
        await conns.close()
    text_path, html_path = write_report(report, run_json.parent)
    console.print(render_text(report), markup=False, highlight=False, soft_wrap=True)
    console.print(f"report: {html_path} (text: {text_path})")
    return report
