"""``ontheway bench roads``: import, CCH build, routes and a 20 x 1 matrix on a real extract,
each beside scipy's Dijkstra on the same graph in the same run.

The extract goes into a graph of its own (a throw-away region of the bench's own catalog),
which is deleted at the end: the regions' real maps are left alone.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from rich.console import Console
from rich.table import Table
from scipy.sparse.csgraph import dijkstra

from ontheway.connections import GraphStore
from ontheway.regions import BBox, Catalog, LatLng, Region
from ontheway.roads.importer import import_osm
from ontheway.roads.routing import RoadService
from ontheway.roads.store import CREATE_CCH_INDEX, drop_graph, graph_name, read_graph
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
        service = RoadService(store, _bench_catalog(region, road_graph.lat, road_graph.lng))
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
        service_ms: list[float] = []
        scipy_ms: list[float] = []
        mismatches = 0
        with console.status(f"{len(points)} routes through the service and through scipy"):
            for (a, b), (_src, _dst) in zip(points, nodes, strict=False):
                started = time.perf_counter()
                route = await service.route([a, b])
                service_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                expected = dijkstra(matrix, indices=int(route.legs[0].start.node))[
                    route.legs[0].end.node
                ]
                scipy_ms.append((time.perf_counter() - started) * 1000)
                mismatches += not np.isclose(route.duration_s, expected, rtol=1e-9, atol=1e-9)
        figures["route_p50_ms"] = _percentile(service_ms, 50)
        figures["route_p99_ms"] = _percentile(service_ms, 99)
        figures["scipy_route_p50_ms"] = _percentile(scipy_ms, 50)
        figures["scipy_route_p99_ms"] = _percentile(scipy_ms, 99)
        figures["route_mismatches"] = mismatches

        matrix_ms: list[float] = []
        scipy_matrix_ms: list[float] = []
        reverse = matrix.T.tocsr()
        with console.status("20 x 1 matrices (drivers to a restaurant)"):
            for _ in range(50):
                picks = rng.choice(network.routable, size=21, replace=False)
                drivers = [
                    LatLng(lat=float(road_graph.lat[n]), lng=float(road_graph.lng[n]))
                    for n in picks[:20]
                ]
                restaurant = LatLng(
                    lat=float(road_graph.lat[picks[20]]), lng=float(road_graph.lng[picks[20]])
                )
                started = time.perf_counter()
                await service.matrix(drivers, [restaurant])
                matrix_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                dijkstra(reverse, indices=int(picks[20]))  # one search back from the restaurant
                scipy_matrix_ms.append((time.perf_counter() - started) * 1000)
        figures["matrix_20x1_p50_ms"] = _percentile(matrix_ms, 50)
        figures["scipy_matrix_20x1_p50_ms"] = _percentile(scipy_matrix_ms, 50)
    finally:
        await drop_graph(db, graph_name(region))
        await db.connection.connection_pool.disconnect()
        await store.aclose()

    table = Table("figure", "ontheway (FalkorDB CCH)", "scipy Dijkstra, same graph", "target")
    table.title = (
        f"{path.name}: {summary.nodes:,} nodes, {summary.roads:,} roads, "
        f"{summary.restrictions} restrictions"
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
        f"route incl. snapping, p50 / p99 ({len(service_ms)} pairs)",
        f"{figures['route_p50_ms']:.2f} / {figures['route_p99_ms']:.2f} ms",
        f"{figures['scipy_route_p50_ms']:.2f} / {figures['scipy_route_p99_ms']:.2f} ms",
        "<= 2 / <= 10 ms",
    )
    table.add_row(
        "20 x 1 matrix, p50",
        f"{figures['matrix_20x1_p50_ms']:.2f} ms",
        f"{figures['scipy_matrix_20x1_p50_ms']:.2f} ms (one reverse search)",
        "<= 5 ms",
    )
    table.add_row("routes whose time differs from scipy's", str(mismatches), "", "0")
    console.print(table)
    return figures


def run_roads_bench_sync(settings: Settings, path: Path, routes: int, console: Console) -> None:
    """Entry point of the CLI."""
    asyncio.run(run_roads_bench(settings, path, routes, console))
