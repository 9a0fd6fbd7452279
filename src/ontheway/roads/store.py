"""The road graphs in FalkorDB: writing an imported graph, reading it back, its indexes.

One graph per region, named ``roads:{<region>}`` (the region as a hash tag, as for every key
of a region, so that the staging graph and the live one share a Redis Cluster slot). An import
writes a staging graph beside the live one, builds its indexes there, and replaces the live
graph with one ``RENAME``: routes keep being answered from the old graph until the switch, and
a failed import leaves the old graph untouched.

    (:Intersection {id, lat, lng, osm_id})
      -[:ROAD {id, distance_m, base_time_s, traffic_factor, time_s, speed_kph, road_class,
               name, osm_way_id}]->(:Intersection)
    (:RoadMap {region, import_id, source, nodes, roads, imported_at, weights})   one node

``RoadMap.weights`` counts the traffic writes since the import (absent on graphs imported
before it existed: 0), so that a process holding the weights in memory knows when to read
them again (``read_version``, ``read_traffic``).

Indexes: ``Intersection.id`` (range), ``ROAD.id`` (range, so that one road's weight is
updated in under a millisecond) and the CCH index on ``ROAD.time_s``.

The nodes are created in ``id`` order in a fresh graph, so that FalkorDB's own node ids equal
``Intersection.id``: routes find their ends with ``id(a) = $s`` (an id seek, where the range
index costs about 30 µs a node). ``read_graph`` checks it, so a graph where it does not hold
fails loudly instead of routing between the wrong nodes.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import redis.exceptions
from falkordb.asyncio import FalkorDB
from falkordb.helpers import stringify_param_value

from ontheway.connections import dependency_errors
from ontheway.errors import ConfigurationError, DependencyUnavailable
from ontheway.roads.graph import RoadGraph
from ontheway.roads.osm import Progress

log = logging.getLogger(__name__)

NODE_BATCH = 5000
ROAD_BATCH = 2000
READ_PAGE = 10_000  # rows per read: each round trip stays well inside the timeout

CREATE_NODE_INDEX = "CREATE INDEX FOR (n:Intersection) ON (n.id)"
CREATE_ROAD_INDEX = "CREATE INDEX FOR ()-[r:ROAD]-() ON (r.id)"
CREATE_CCH_INDEX = "CREATE CCH INDEX FOR ()-[r:ROAD]->() ON (r.time_s)"
_WRITE_NODES = """
UNWIND $rows AS row
CREATE (:Intersection {id: row[0], lat: row[1], lng: row[2], osm_id: row[3]})
"""
_WRITE_ROADS = """
UNWIND $rows AS row
MATCH (a:Intersection {id: row[1]}), (b:Intersection {id: row[2]})
CREATE (a)-[:ROAD {id: row[0], distance_m: row[3], base_time_s: row[4], traffic_factor: 1.0,
                   time_s: row[4], speed_kph: row[5], road_class: row[6], name: row[7],
                   osm_way_id: row[8]}]->(b)
"""
_READ_NODES = """
MATCH (n:Intersection) WHERE n.id >= $lo AND n.id < $hi
RETURN n.id, n.lat, n.lng, n.osm_id, id(n)
"""
# No labels on the ends: with them the planner scans every node and probes the road index
# for each (seconds per page on large graphs); without, it reads the index range alone.
_READ_ROADS = """
MATCH (a)-[r:ROAD]->(b) WHERE r.id >= $lo AND r.id < $hi
RETURN r.id, a.id, b.id, r.distance_m, r.base_time_s, r.time_s, r.speed_kph, r.road_class,
       r.name, r.osm_way_id
"""
_READ_META = "MATCH (m:RoadMap) RETURN m.import_id, m.nodes, m.roads"
READ_VERSION = "MATCH (m:RoadMap) RETURN m.import_id, coalesce(m.weights, 0)"
# A road at free flow has time_s = base_time_s (``roads.traffic`` rounds both alike), so the
# roads with another factor give every weight.
_READ_TRAFFIC = "MATCH ()-[r:ROAD]->() WHERE r.traffic_factor <> 1.0 RETURN r.id, r.time_s"


def graph_name(region: str) -> str:
    """The FalkorDB graph of a region's roads."""
    return f"roads:{{{region}}}"


@contextmanager
def graph_errors() -> Iterator[None]:
    """FalkorDB's errors become ``DependencyUnavailable``: the server is down, or the graph
    cannot answer (say, its CCH index was dropped by hand)."""
    try:
        with dependency_errors("FalkorDB"):
            yield
    except redis.exceptions.ResponseError as exc:
        raise DependencyUnavailable(f"FalkorDB refused the query: {exc}") from exc


async def graph_exists(db: FalkorDB, name: str) -> bool:
    """Whether a graph of this name exists."""
    with graph_errors():
        return bool(await db.connection.exists(name))


async def drop_graph(db: FalkorDB, name: str) -> None:
    """Delete a graph if it exists."""
    with graph_errors():
        await db.connection.delete(name)


async def write_graph(
    db: FalkorDB,
    name: str,
    graph: RoadGraph,
    *,
    region: str,
    source: str,
    progress: Progress | None = None,
) -> tuple[float, float]:
    """Write ``graph`` as the graph ``name``, replacing it atomically; return the seconds spent
    writing and building the indexes."""
    staging = f"{name}:import:{uuid.uuid4().hex[:12]}"
    g = db.select_graph(staging)
    started = time.perf_counter()
    try:
        with graph_errors():
            # Indexed from the start: an index created over existing nodes is filled in the
            # background, and the road writes' MATCHes would scan every node until it is.
            await g.query(CREATE_NODE_INDEX)
            await _write_nodes(g, graph, progress)
            await _write_roads(g, graph, progress)
            await g.query(
                "CREATE (:RoadMap {region: $region, import_id: $import_id, source: $source, "
                "nodes: $nodes, roads: $roads, imported_at: $at, weights: 0})",
                {
                    "region": region,
                    "import_id": uuid.uuid4().hex,
                    "source": source,
                    "nodes": graph.node_count,
                    "roads": graph.road_count,
                    "at": time.time(),
                },
            )
            written = time.perf_counter()
            if progress is not None:
                progress("index", 0, 2)
            await g.query(CREATE_ROAD_INDEX)
            await g.query(CREATE_CCH_INDEX)
            if progress is not None:
                progress("index", 2, 2)
            indexed = time.perf_counter()
            await db.connection.rename(staging, name)
    finally:
        await drop_graph(db, staging)
    return written - started, indexed - written


async def _write_nodes(g: Any, graph: RoadGraph, progress: Progress | None) -> None:
    n = graph.node_count
    lat, lng, osm = graph.lat.tolist(), graph.lng.tolist(), graph.node_osm_id.tolist()
    for lo in range(0, n, NODE_BATCH):
        hi = min(n, lo + NODE_BATCH)
        rows = [[i, lat[i], lng[i], osm[i]] for i in range(lo, hi)]
        await g.query(_WRITE_NODES, {"rows": rows})
        if progress is not None:
            progress("nodes", hi, n)


async def _write_roads(g: Any, graph: RoadGraph, progress: Progress | None) -> None:
    m = graph.road_count
    src, dst = graph.src.tolist(), graph.dst.tolist()
    dist, base = graph.distance_m.tolist(), graph.base_time_s.tolist()
    speed, way = graph.speed_kph.tolist(), graph.osm_way_id.tolist()
    for lo in range(0, m, ROAD_BATCH):
        hi = min(m, lo + ROAD_BATCH)
        rows = [
            [
                i,
                src[i],
                dst[i],
                dist[i],
                base[i],
                speed[i],
                graph.road_class[i],
                graph.name[i],
                way[i],
            ]
            for i in range(lo, hi)
        ]
        await g.query(_WRITE_ROADS, {"rows": rows})
        if progress is not None:
            progress("roads", hi, m)


async def read_meta(db: FalkorDB, name: str) -> str | None:
    """The import id of the graph, or None when there is no such graph."""
    if not await graph_exists(db, name):
        return None
    with graph_errors():
        rows = (await db.select_graph(name).ro_query(_READ_META)).result_set
    return str(rows[0][0]) if rows else None


async def read_version(db: FalkorDB, name: str) -> tuple[str, int] | None:
    """The graph's import id and how many traffic writes it has had, in one round trip; None
    when there is no such graph."""
    try:
        rows = await read_rows(db, name, READ_VERSION, {})
    except DependencyUnavailable as exc:
        if "empty key" in str(exc):
            return None
        raise
    return (str(rows[0][0]), int(rows[0][1])) if rows else None


async def read_traffic(db: FalkorDB, name: str) -> tuple[list[int], list[float]]:
    """The ids and travel times of the roads whose traffic factor is not 1 (one scan of the
    roads in the server: about 130 ms on Mexico City's 193,134)."""
    with graph_errors():
        reply = await db.connection.execute_command("GRAPH.RO_QUERY", name, _READ_TRAFFIC)
    rows = reply[1]
    return [int(row[0]) for row in rows], [float(row[1]) for row in rows]


async def read_graph(db: FalkorDB, name: str) -> tuple[str, RoadGraph] | None:
    """The stored graph and its import id, or None when there is no such graph."""
    if not await graph_exists(db, name):
        return None
    g = db.select_graph(name)
    with graph_errors():
        for _ in range(3):  # an import may replace the graph while we page through it
            meta = (await g.ro_query(_READ_META)).result_set
            if not meta:
                return None
            import_id, n, m = str(meta[0][0]), int(meta[0][1]), int(meta[0][2])
            nodes = await _read_pages(db, name, _READ_NODES, n)
            if len(nodes) < n:
                nodes = await _read_all_nodes(db, name)
            roads = await _read_pages(db, name, _READ_ROADS, m)
            if len(nodes) == n and len(roads) == m and await read_meta(db, name) == import_id:
                break
        else:
            raise DependencyUnavailable(f"the graph {name} kept changing while it was read")
    nodes.sort(key=lambda row: row[0])
    if any(row[0] != row[4] for row in nodes):
        raise ConfigurationError(
            f"the graph {name} was not written by `ontheway roads import` (its node ids are "
            "not FalkorDB's): import the map again"
        )
    roads.sort(key=lambda row: row[0])
    cols = list(zip(*roads, strict=True)) if roads else [()] * 10
    node_cols = list(zip(*nodes, strict=True)) if nodes else [()] * 5
    graph = RoadGraph(
        node_osm_id=np.array(node_cols[3], dtype=np.int64),
        lat=np.array(node_cols[1], dtype=np.float64),
        lng=np.array(node_cols[2], dtype=np.float64),
        src=np.array(cols[1], dtype=np.int64),
        dst=np.array(cols[2], dtype=np.int64),
        distance_m=np.array(cols[3], dtype=np.float64),
        base_time_s=np.array(cols[4], dtype=np.float64),
        time_s=np.array(cols[5], dtype=np.float64),
        speed_kph=np.array(cols[6], dtype=np.float64),
        road_class=[_text(c) for c in cols[7]],
        name=[None if v is None else _text(v) for v in cols[8]],
        osm_way_id=np.array(cols[9], dtype=np.int64),
    )
    return import_id, graph


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _read_all_nodes(db: FalkorDB, name: str) -> list[list[Any]]:
    """Every node by a label scan. FalkorDB 4.22 can lose entries of a range index when it
    rebuilds it after a restart (the node with id 0 of a reloaded map was missing from it:
    FalkorDB issue 2811, index population skipping rows); the paged read then comes up short,
    and the scan, which does not use the index, reads them all."""
    log.warning("the node index of %s is missing entries: reading its nodes by a scan", name)
    reply = await db.connection.execute_command(
        "GRAPH.RO_QUERY", name, _READ_NODES.replace("WHERE n.id >= $lo AND n.id < $hi", "")
    )
    return list(reply[1])


async def _read_pages(db: FalkorDB, name: str, query: str, count: int) -> list[list[Any]]:
    """All rows of a paged query, in the server's plain (non-compact) reply format.

    The plain format gives numbers as strings or integers and strings as they are; the
    columns' types are known here, so that is enough, and it is parsed in C (hiredis)
    rather than value by value in Python: three times faster on large graphs.
    """
    rows: list[list[Any]] = []
    for lo in range(0, count, READ_PAGE):
        reply = await db.connection.execute_command(
            "GRAPH.RO_QUERY", name, f"CYPHER lo={lo} hi={lo + READ_PAGE} {query}"
        )
        rows.extend(reply[1])
    return rows


# The compact reply's value types (FalkorDB's result-set format); routes read only these.
_NULL, _STRING, _INTEGER, _BOOLEAN, _DOUBLE, _ARRAY = 1, 2, 3, 4, 5, 6


async def read_rows(
    db: FalkorDB, name: str, query: str, params: dict[str, int | list[list[int]]]
) -> list[list[Any]]:
    """The rows of a read-only query whose columns are scalars or lists of them.

    The hot path of routing: the client's generic parser takes about 160 µs on a route of 280
    roads, this one about 30 µs. Doubles come as the server writes them, to 15 significant
    digits (as through the client). Parameters (Python integers, lists of lists of them) go
    in the query's ``CYPHER`` header, so the query text stays the same and its plan is cached.
    """
    header = "".join(f"{key}={value} " for key, value in params.items())
    text = f"CYPHER {header}{query}" if header else query
    with graph_errors():
        reply = await db.connection.execute_command("GRAPH.RO_QUERY", name, text, "--compact")
        if reply and isinstance(reply[-1], redis.exceptions.ResponseError):
            raise reply[-1]  # a run-time error comes as the last element of the reply
    return [[_decode(cell) for cell in row] for row in reply[1]] if len(reply) > 1 else []


async def read_rows_together(
    db: FalkorDB, queries: Sequence[tuple[str, str, dict[str, Any]]]
) -> list[list[list[Any]] | None]:
    """Several read-only queries (graph, query, parameters) in one round trip: each one's
    rows as ``read_rows`` gives them, or None when its graph does not exist. Parameters are
    written by the client library's own quoting (strings too)."""
    with graph_errors():
        pipe = db.connection.pipeline(transaction=False)
        for name, query, params in queries:
            header = "".join(f"{k}={stringify_param_value(v)} " for k, v in params.items())
            text = f"CYPHER {header}{query}" if header else query
            pipe.execute_command("GRAPH.RO_QUERY", name, text, "--compact")
        replies = await pipe.execute(raise_on_error=False)
    found: list[list[list[Any]] | None] = []
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError) and "empty key" in str(reply):
            found.append(None)
            continue
        with graph_errors():
            if isinstance(reply, Exception):
                raise reply
            if reply and isinstance(reply[-1], redis.exceptions.ResponseError):
                raise reply[-1]
        found.append([[_decode(c) for c in row] for row in reply[1]] if len(reply) > 1 else [])
    return found


def _decode(cell: list[Any]) -> Any:
    kind, value = cell
    if kind == _DOUBLE:
        return float(value)
    if kind == _ARRAY:
        return [
            float(v) if k == _DOUBLE else v if k in (_INTEGER, _STRING) else _decode([k, v])
            for k, v in value
        ]
    if kind == _BOOLEAN:
        return value == "true"
    if kind in (_NULL, _STRING, _INTEGER):
        return value
    raise ValueError(f"unexpected value of type {kind} in a FalkorDB reply")
