"""``ontheway bench roads``: import, CCH build, routes, 20 x 1 matrices and traffic updates on a
real extract, each beside scipy's Dijkstra on the same graph in the same run.

The extract goes into a graph of its own (a throw-away region of the bench's own catalog),
which is deleted at the end: the regions' real maps are left alone.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from ontheway.bench.common import run_stoppable
from ontheway.connections import GraphStore
from ontheway.regions import BBox, Catalog, LatLng, Region
from ontheway.roads.geo import haversine_m_arrays
from ontheway.roads.graph import RoadGraph
from ontheway.roads.importer import import_osm
from ontheway.roads.matrix import cch_times, pairs_of
from ontheway.roads.network import SNAP_LIMIT_M, RoadNetwork
from ontheway.roads.routing import RoadService
from ontheway.roads.store import (
    CREATE_CCH_INDEX,
    drop_graph,
    graph_name,
    read_graph,
)
from ontheway.roads.traffic import RoadFactor, TrafficChange, travel_times
from ontheway.settings import Settings


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _bench_catalog(region: str, lat: NDArray[np.float64], lng: NDArray[np.float64]) -> Catalog:
    box = BBox(
        min_lat=float(lat.min()) - 0.01,
        min_lng=float(lng.min()) - 0.01,
        max_lat=float(lat.max()) + 0.01,
        max_lng=float(lng.max()) + 0.01,
    )
    center = LatLng(lat=(box.min_lat + box.max_lat) / 2, lng=(box.min_lng + box.max_lng) / 2)
    bench = Region(
        region=region,
        name="roads benchmark",
        country="XX",
        center=center,
        bbox=box,
        timezone="UTC",
        shard="bench",
    )
    return Catalog([bench])


async def run_roads_bench(
    settings: Settings, path: Path, routes: int, console: Console, seed: int = 1
) -> dict[str, float]:
    """Run the benchmark on ``path`` and print a table; return the figures (ms or s)."""
    load_before = os.getloadavg()[0]
    region = f"bench_{uuid.uuid4().hex[:10]}"
    store = GraphStore(settings.require_falkordb_url(), max(settings.dependency_timeout_s, 120))
    db = await store.db()
    figures: dict[str, float] = {}
    try:
        with console.status(f"importing {path.name}"):
            summary = await import_osm(db, region, path)
        figures["import_s"] = summary.read_s + summary.write_s + summary.index_s
        graph = db.select_graph(graph_name(region))
        await graph.query("DROP CCH INDEX FOR ()-[r:ROAD]->() ON (r.time_s)")
        started = time.perf_counter()
        await graph.query(CREATE_CCH_INDEX)
        figures["cch_build_s"] = time.perf_counter() - started

        loaded = await read_graph(db, graph_name(region))
        assert loaded is not None
        road_graph = loaded[1]
        service_catalog = _bench_catalog(region, road_graph.lat, road_graph.lng)
        service = RoadService(store, service_catalog)
        # The service loads the network from the graph, as the API does on a region's first route.
        started = time.perf_counter()
        network = await service.network(region)
        figures["network_load_s"] = time.perf_counter() - started

        started = time.perf_counter()
        matrix = road_graph.matrix()
        figures["scipy_matrix_build_s"] = time.perf_counter() - started

        rng = np.random.default_rng(seed)
        nodes = rng.choice(network.routable, size=(routes, 2))
        points = [
            (
                LatLng(lat=float(road_graph.lat[a]), lng=float(road_graph.lng[a])),
                LatLng(lat=float(road_graph.lat[b]), lng=float(road_graph.lng[b])),
            )
            for a, b in nodes
            if a != b
        ]
        with console.status(f"{len(points)} routes through the service and through scipy"):
            figures.update(await _routes(service, points, matrix))
        with console.status("snapping points: KD-tree in the process, FalkorDB's point index"):
            figures.update(await _snapping(db, region, network, rng))
        with console.status("20 x 1 matrices (drivers to a restaurant)"):
            figures.update(
                await _matrices(service, region, network.routable, road_graph, matrix, rng)
            )

        with console.status("traffic updates of 1,000 roads while routes are asked"):
            other = RoadService(store, service_catalog)
            near = _picks(network.routable, road_graph, rng, near=True)[:10]
            figures.update(await _traffic(service, other, region, road_graph, points, near, rng))
    finally:
        await drop_graph(db, graph_name(region))
        await db.connection.connection_pool.disconnect()
        await store.aclose()

    table = Table("figure", "ontheway (service)", "scipy Dijkstra, same graph", "target")
    # The machine's load decides the tails (and, on a busy machine, the medians): say it.
    table.title = (
        f"{path.name}: {summary.nodes:,} nodes, {summary.roads:,} roads, "
        f"{summary.restrictions} restrictions; load average {load_before:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    table.add_row(
        "import (read + write + indexes)",
        f"{figures['import_s']:.1f} s (read {summary.read_s:.1f}, write {summary.write_s:.1f})",
        f"matrix build {figures['scipy_matrix_build_s'] * 1000:.0f} ms",
        "",
    )
    table.add_row("CCH build", f"{figures['cch_build_s'] * 1000:.0f} ms", "-", "")
    table.add_row(
        "network load (first route of a region)", f"{figures['network_load_s']:.1f} s", "-", ""
    )
    table.add_row(
        "snapping a point, p50 / p99 (FalkorDB's point index, same points: p50 / p99)",
        f"{figures['snap_p50_us']:.0f} / {figures['snap_p99_us']:.0f} µs "
        f"({figures['falkordb_snap_p50_us']:.0f} / {figures['falkordb_snap_p99_us']:.0f} µs)",
        "-",
        "",
    )
    table.add_row(
        f"route incl. snapping, p50 / p99 ({len(points)} pairs)",
        f"{figures['route_p50_ms']:.2f} / {figures['route_p99_ms']:.2f} ms",
        f"{figures['scipy_route_p50_ms']:.2f} / {figures['scipy_route_p99_ms']:.2f} ms",
        "<= 2 / <= 10 ms",
    )
    for kind, label in (("near", "within 2 miles"), ("anywhere", "anywhere on the map")):
        table.add_row(
            f"20 x 1 matrix, drivers {label}, p50 / p99 (FalkorDB, 20 CCH searches: p50)",
            f"{figures[f'matrix_{kind}_p50_ms']:.2f} / {figures[f'matrix_{kind}_p99_ms']:.2f} ms "
            f"({figures[f'cch_matrix_{kind}_p50_ms']:.2f} ms)",
            f"{figures[f'scipy_matrix_{kind}_p50_ms']:.2f} ms (one whole reverse search)",
            "<= 5 ms",
        )
    table.add_row(
        "the same matrices searched in the process alone, on the graph's core, p50: "
        "near / anywhere",
        f"{figures['search_matrix_near_p50_ms']:.2f} / "
        f"{figures['search_matrix_anywhere_p50_ms']:.2f} ms",
        f"{figures['scipy_matrix_near_p50_ms']:.2f} / "
        f"{figures['scipy_matrix_anywhere_p50_ms']:.2f} ms (one whole reverse search)",
        "",
    )
    table.add_row(
        "matrix times that differ from scipy's (before / after traffic)",
        f"{int(figures['matrix_mismatches'])} / {int(figures['traffic_matrix_mismatches'])}",
        "",
        "0",
    )
    table.add_row(
        "another process's first matrix after a traffic update (reads the new weights)",
        f"{figures['matrix_after_traffic_ms']:.0f} ms",
        "",
        "",
    )
    table.add_row(
        "traffic update of 1,000 roads: until the next route reflects it (median / worst of 3)",
        f"{figures['traffic_visible_ms']:.0f} / {figures['traffic_visible_max_ms']:.0f} ms",
        f"{figures['scipy_traffic_ms']:.0f} ms (new matrix + one search)",
        "<= 1 s",
    )
    table.add_row(
        "slowest route asked meanwhile",
        f"{figures['traffic_route_max_ms']:.0f} ms",
        "",
        "",
    )
    table.add_row(
        "routes whose time differs from scipy's",
        f"{int(figures['route_mismatches'])} (after traffic: {int(figures['traffic_mismatches'])})",
        "",
        "0",
    )
    console.print(table)
    return figures


# Each side is timed in a loop of its own: a scipy search (12 ms of CPU and a 94,653-entry
# array) between two routes left the caches cold and added about 1.5 ms to the next route.
async def _routes(
    service: RoadService, points: list[tuple[LatLng, LatLng]], matrix: csr_matrix
) -> dict[str, float]:
    """Every route through the service, then each checked against scipy's Dijkstra."""
    service_ms: list[float] = []
    routes = []
    for a, b in points:
        started = time.perf_counter()
        routes.append(await service.route([a, b]))
        service_ms.append((time.perf_counter() - started) * 1000)
    scipy_ms: list[float] = []
    mismatches = 0
    for route in routes:
        leg = route.legs[0]
        started = time.perf_counter()
        expected = dijkstra(matrix, indices=int(leg.start.node))[leg.end.node]
        scipy_ms.append((time.perf_counter() - started) * 1000)
        mismatches += not np.isclose(route.duration_s, expected, rtol=1e-9, atol=1e-9)
    return {
        "route_p50_ms": _percentile(service_ms, 50),
        "route_p99_ms": _percentile(service_ms, 99),
        "scipy_route_p50_ms": _percentile(scipy_ms, 50),
        "scipy_route_p99_ms": _percentile(scipy_ms, 99),
        "route_mismatches": mismatches,
    }


DISPATCH_RADIUS_M = 3219.0  # the dispatcher's first search circle: 2 miles


async def _cch_matrix(service: RoadService, region: str, rows: list[int], col: int) -> None:
    """The matrix as FalkorDB CCH searches, one per pair, over the server's threads."""
    db = await service.graph_db()
    reply = await db.connection.execute_command("GRAPH.CONFIG", "GET", "THREAD_COUNT")
    await cch_times(db, graph_name(region), pairs_of(rows, [col]), max(1, int(reply[1])))


def _picks(
    routable: NDArray[np.int64], road_graph: RoadGraph, rng: np.random.Generator, near: bool
) -> list[NDArray[np.int64]]:
    """50 sets of 20 drivers and a restaurant (last): anywhere on the map, or ``near``
    (within the dispatcher's 2-mile circle, as dispatch asks)."""
    picks: list[NDArray[np.int64]] = []
    while len(picks) < 50:
        restaurant = int(rng.choice(routable))
        pool = routable
        if near:
            crow = haversine_m_arrays(
                np.full(len(routable), road_graph.lat[restaurant]),
                np.full(len(routable), road_graph.lng[restaurant]),
                road_graph.lat[routable],
                road_graph.lng[routable],
            )
            pool = routable[(crow <= DISPATCH_RADIUS_M) & (routable != restaurant)]
        if len(pool) >= 20:
            picks.append(np.append(rng.choice(pool, size=20, replace=False), restaurant))
    return picks


# FalkorDB's alternative to the KD-tree: a range index on a point property, the nearest node
# within the snapping limit. The bench's graph gets the property and the index; the regions'
# graphs do not (the KD-tree serves them).
_SET_LOCATIONS = (
    "MATCH (n:Intersection) SET n.location = point({latitude: n.lat, longitude: n.lng})"
)
_NEAREST = """
MATCH (n:Intersection)
WHERE distance(n.location, point({latitude: $lat, longitude: $lng})) < $limit
RETURN id(n) ORDER BY distance(n.location, point({latitude: $lat, longitude: $lng})) LIMIT 1
"""


async def _snapping(
    db: Any, region: str, network: RoadNetwork, rng: np.random.Generator
) -> dict[str, float]:
    """500 random points within 200 m of the map's nodes, snapped by the network's KD-tree
    and by a FalkorDB point index (nearest node within 500 m), in microseconds."""
    graph = network.graph
    nodes = rng.choice(network.routable, size=500)
    lat = graph.lat[nodes] + rng.uniform(-0.0018, 0.0018, size=500)
    lng = graph.lng[nodes] + rng.uniform(-0.0018, 0.0018, size=500)
    tree_us: list[float] = []
    for a, b in zip(lat.tolist(), lng.tolist(), strict=True):
        started = time.perf_counter()
        network.snap(a, b)
        tree_us.append((time.perf_counter() - started) * 1e6)
    g = db.select_graph(graph_name(region))
    await g.query(_SET_LOCATIONS)
    await g.query("CREATE INDEX FOR (n:Intersection) ON (n.location)")
    await asyncio.sleep(2)  # the index over existing nodes fills in the background
    index_us: list[float] = []
    for a, b in zip(lat.tolist(), lng.tolist(), strict=True):
        started = time.perf_counter()
        await g.ro_query(_NEAREST, {"lat": a, "lng": b, "limit": SNAP_LIMIT_M})
        index_us.append((time.perf_counter() - started) * 1e6)
    return {
        "snap_p50_us": _percentile(tree_us, 50),
        "snap_p99_us": _percentile(tree_us, 99),
        "falkordb_snap_p50_us": _percentile(index_us, 50),
        "falkordb_snap_p99_us": _percentile(index_us, 99),
    }


def _ends(road_graph: RoadGraph, nodes: NDArray[np.int64]) -> tuple[list[LatLng], list[LatLng]]:
    """The 20 drivers' and the restaurant's points of a pick."""
    points = [LatLng(lat=float(road_graph.lat[n]), lng=float(road_graph.lng[n])) for n in nodes]
    return points[:20], points[20:]


def _mismatches(
    network: RoadNetwork,
    road_graph: RoadGraph,
    reverse: csr_matrix,
    nodes: NDArray[np.int64],
    result: list[list[float | None]],
) -> int:
    """How many of a 20 x 1 matrix's times differ from scipy's search back from the
    restaurant (between the nodes the points snap to: two nodes may share a position)."""
    ends = []
    for n in nodes:
        snap = network.snap(float(road_graph.lat[n]), float(road_graph.lng[n]))
        assert snap is not None
        ends.append(snap.node)
    expected = dijkstra(reverse, indices=ends[20])[ends[:20]]
    got = np.array([np.nan if row[0] is None else row[0] for row in result], dtype=np.float64)
    return int((~np.isclose(got, expected, rtol=1e-9, atol=1e-9)).sum())


async def _matrices(
    service: RoadService,
    region: str,
    routable: NDArray[np.int64],
    road_graph: RoadGraph,
    matrix: csr_matrix,
    rng: np.random.Generator,
) -> dict[str, float]:
    """50 matrices of 20 drivers to a restaurant through the service, then the same pairs as
    FalkorDB CCH searches, then scipy's one search back from each restaurant; for drivers
    within 2 miles of the restaurant and for drivers anywhere on the map."""
    reverse = matrix.T.tocsr()
    figures: dict[str, float] = {}
    mismatches = 0
    for kind in ("near", "anywhere"):
        picks = _picks(routable, road_graph, rng, near=kind == "near")
        service_ms: list[float] = []
        results = []
        for nodes in picks:
            started = time.perf_counter()
            results.append(await service.matrix(*_ends(road_graph, nodes)))
            service_ms.append((time.perf_counter() - started) * 1000)
        cch_ms: list[float] = []
        for nodes in picks:
            started = time.perf_counter()
            await _cch_matrix(service, region, nodes[:20].tolist(), int(nodes[20]))
            cch_ms.append((time.perf_counter() - started) * 1000)
        scipy_ms: list[float] = []
        for nodes in picks:
            started = time.perf_counter()
            dijkstra(reverse, indices=int(nodes[20]))
            scipy_ms.append((time.perf_counter() - started) * 1000)
        network = await service.network(region)
        search_ms: list[float] = []  # the in-process search alone, whichever the service chose
        for nodes in picks:
            started = time.perf_counter()
            network.travel_times(nodes[:20].tolist(), [int(nodes[20])])
            search_ms.append((time.perf_counter() - started) * 1000)
        for nodes, result in zip(picks, results, strict=True):
            mismatches += _mismatches(network, road_graph, reverse, nodes, result)
        figures[f"matrix_{kind}_p50_ms"] = _percentile(service_ms, 50)
        figures[f"matrix_{kind}_p99_ms"] = _percentile(service_ms, 99)
        figures[f"cch_matrix_{kind}_p50_ms"] = _percentile(cch_ms, 50)
        figures[f"scipy_matrix_{kind}_p50_ms"] = _percentile(scipy_ms, 50)
        figures[f"search_matrix_{kind}_p50_ms"] = _percentile(search_ms, 50)
    figures["matrix_mismatches"] = mismatches
    return figures


async def _traffic(
    service: RoadService,
    other: RoadService,
    region: str,
    road_graph: RoadGraph,
    points: list[tuple[LatLng, LatLng]],
    near: list[NDArray[np.int64]],
    rng: np.random.Generator,
) -> dict[str, float]:
    """Three updates of 1,000 roads (among them every road of a route, so that it must change):
    from the update's start until a route asked afterwards has the new, exact time; a route
    loop runs meanwhile to show that routing keeps answering."""
    times = road_graph.time_s.copy()
    road_count = road_graph.road_count
    visible: list[float] = []
    scipy_ms: list[float] = []
    meanwhile: list[float] = []
    stop = asyncio.Event()

    async def keep_routing() -> None:
        while not stop.is_set():
            a, b = points[int(rng.integers(len(points)))]
            started = time.perf_counter()
            await service.route([a, b])
            meanwhile.append((time.perf_counter() - started) * 1000)
            await asyncio.sleep(0.005)

    # Another process's service, its network loaded before the updates.
    await other.matrix(*_ends(road_graph, near[0]))
    loop = asyncio.create_task(keep_routing())
    try:
        for trial in range(3):
            a, b = points[trial]
            before = await service.route([a, b])
            on_route = np.array(before.legs[0].road_ids, dtype=np.int64)
            rest = np.setdiff1d(np.arange(road_count, dtype=np.int64), on_route)
            roads = np.concatenate([on_route, rng.permutation(rest)])[:1000]
            factor = 2.0 + trial
            change = TrafficChange(roads=tuple(RoadFactor(int(r), factor) for r in roads))
            started = time.perf_counter()
            await service.update_traffic(region, change)
            after = await service.route([a, b])
            visible.append((time.perf_counter() - started) * 1000)
            times[roads] = travel_times(road_graph.base_time_s[roads], np.full(len(roads), factor))
            started = time.perf_counter()
            matrix = road_graph.matrix(times)
            expected = dijkstra(matrix, indices=after.legs[0].start.node)[after.legs[0].end.node]
            scipy_ms.append((time.perf_counter() - started) * 1000)
            if not np.isclose(after.duration_s, expected, rtol=1e-9, atol=1e-9):
                raise AssertionError("a route after a traffic update differs from scipy's")
    finally:
        stop.set()
        await loop
    matrix = road_graph.matrix(times)
    mismatches = 0
    for a, b in points[:100]:
        route = await service.route([a, b])
        leg = route.legs[0]
        expected = dijkstra(matrix, indices=leg.start.node)[leg.end.node]
        mismatches += not np.isclose(route.duration_s, expected, rtol=1e-9, atol=1e-9)
    # The other process's next matrix notices the new weights, reads them and searches.
    started = time.perf_counter()
    await other.matrix(*_ends(road_graph, near[0]))
    after_traffic_ms = (time.perf_counter() - started) * 1000
    network = await other.network(region)
    reverse = matrix.T.tocsr()
    matrix_mismatches = 0
    for nodes in near:
        result = await other.matrix(*_ends(road_graph, nodes))
        matrix_mismatches += _mismatches(network, road_graph, reverse, nodes, result)
    return {
        "traffic_visible_ms": statistics.median(visible),
        "traffic_visible_max_ms": max(visible),
        "scipy_traffic_ms": statistics.median(scipy_ms),
        "traffic_route_max_ms": max(meanwhile),
        "traffic_mismatches": mismatches,
        "traffic_matrix_mismatches": matrix_mismatches,
        "matrix_after_traffic_ms": after_traffic_ms,
    }


def run_roads_bench_sync(settings: Settings, path: Path, routes: int, console: Console) -> None:
    """Entry point of the CLI."""
    run_stoppable(run_roads_bench(settings, path, routes, console))
