"""A round trip to FalkorDB: a Cypher query and a CCH-indexed shortest path on a tiny graph."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ontheway.connections import Connections, GraphStore
from ontheway.settings import Settings

ROADS = [  # from, to, travel time (s), id: 1 -> 5 is fastest via 2 and 3
    (1, 2, 10.0, "r12"), (2, 3, 10.0, "r23"), (1, 4, 5.0, "r14"),
    (4, 3, 30.0, "r43"), (3, 5, 1.0, "r35"), (2, 5, 50.0, "r25"),
]  # fmt: skip
ROUTE = (
    "MATCH (a:Intersection {id: $from}), (b:Intersection {id: $to})"
    " CALL db.idx.cch.query({sourceNode: a, targetNode: b, relTypes: ['ROAD'],"
    " weightProp: 'time_s'}) YIELD pathWeight, path"
    " RETURN pathWeight, [n IN nodes(path) | n.id]"
)


@pytest.fixture
async def graph(conns: Connections, uid: str) -> AsyncIterator[Any]:
    assert conns.graphs is not None
    g = (await conns.graphs.db()).select_graph(f"test_tiny_{uid}")
    await g.query("UNWIND range(1, 5) AS i CREATE (:Intersection {id: i})")
    await g.query(
        "UNWIND $roads AS r MATCH (a:Intersection {id: r[0]}), (b:Intersection {id: r[1]})"
        " CREATE (a)-[:ROAD {time_s: r[2], id: r[3]}]->(b)",
        {"roads": [list(r) for r in ROADS]},
    )
    await g.query("CREATE INDEX FOR ()-[r:ROAD]-() ON (r.id)")
    await g.query("CREATE CCH INDEX FOR ()-[r:ROAD]->() ON (r.time_s)")
    yield g
    await g.delete()


async def test_a_cypher_query_counts_the_tiny_graph(graph: Any) -> None:
    result = await graph.ro_query("MATCH (:Intersection)-[r:ROAD]->() RETURN count(r)")
    assert result.result_set == [[len(ROADS)]]


async def test_the_cch_index_gives_the_shortest_path_and_follows_a_new_weight(
    graph: Any,
) -> None:
    result = await graph.ro_query(ROUTE, {"from": 1, "to": 5})
    assert result.result_set == [[21.0, [1, 2, 3, 5]]]
    await graph.query("MATCH ()-[r:ROAD {id: 'r23'}]->() SET r.time_s = 100.0")
    result = await graph.ro_query(ROUTE, {"from": 1, "to": 5})
    assert result.result_set == [[36.0, [1, 4, 3, 5]]]


async def test_against_the_one_way_roads_there_is_no_path(graph: Any) -> None:
    result = await graph.ro_query(ROUTE, {"from": 5, "to": 1})
    assert result.result_set == []


async def test_concurrent_first_uses_of_the_graph_store_make_one_client(
    settings: Settings,
) -> None:
    store = GraphStore(settings.require_falkordb_url(), 5)
    try:
        clients = await asyncio.gather(*(store.db() for _ in range(4)))
        assert all(client is clients[0] for client in clients)
        assert await clients[0].connection.ping()
    finally:
        await store.aclose()
