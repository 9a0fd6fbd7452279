"""Travel-time matrices: searched in the process, or asked of FalkorDB's CCH pair by pair,
whichever should cost less.

In the process (``roads.search``), one search per row or column settles every node nearer in
time than its farthest point: cheap between nearby points, as dear as a search of the whole
map between far ones. FalkorDB's CCH index answers one pair per search (4.22 has no
one-to-many search), at much the same cost wherever the points are, spread over the server's
threads. ``ontheway bench roads`` on the Mexico City extract (94,653 nodes), quiet 2-core
machine, same run: 20 drivers within 2 miles of a restaurant, 3.1 ms in the process against
4.9 ms as 20 CCH searches; 20 drivers anywhere on the map, 12.2 ms against 6.7 ms (before
the searches ran on the graph's core, a third cheaper).

So the cost of the searches is estimated from the routable nodes within ``REACH`` times each
search's farthest straight-line distance (a KD-tree count, about 30 µs) at ``NODE_MS`` each
(most of Mexico City's core: 8.2 ms in a run where scipy's whole search took 13.6 ms against
11 on a quiet host, so about 7 ms there), and that of the CCH from the pairs at
``CCH_PAIR_MS`` each over the server's threads; the cheaper is taken. Both give exactly the
shortest time on the graph's weights, rounded to the millisecond.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ontheway.roads.network import RoadNetwork
from ontheway.roads.search import plan_searches
from ontheway.roads.store import (
    graph_errors,
    graph_name,
    read_meta,
    read_rows,
    read_traffic,
    read_version,
)

VERSION_CHECK_S = 0.5
"""How long a process trusts its copy of a map's weights before asking the graph again: a
traffic write by another process (or a re-import) reaches its matrices within this. Asking at
every matrix cost about 0.4 ms of the asking process's CPU per matrix (a 1 x 1 matrix on the
San Francisco map: 0.76-0.78 ms with the question, 0.40-0.41 without, on the 2-core
development machine: ``scripts/bench-client-calls.py``), and each order asks two (its
estimate, its dispatch)."""
INLINE_SEARCHES = 4
"""Up to this many searches run in the event loop (a few ms each: a thread's hand-off and the
GIL would cost more); beyond, in a thread."""
REACH = 1.2
NODE_MS = 7.0 / 94_653
CCH_PAIR_MS = 0.6

# One CCH search per pair; the rows carry the import id, so a re-import is noticed.
_PAIRS_QUERY = """
UNWIND $pairs AS pair
MATCH (a), (b) WHERE id(a) = pair[0] AND id(b) = pair[1]
CALL db.idx.cch.query({sourceNode: a, targetNode: b, relTypes: ['ROAD'], weightProp: 'time_s'})
YIELD pathWeight
MATCH (m:RoadMap)
RETURN m.import_id, pair[0], pair[1], pathWeight
"""


class Reimported(Exception):
    """The graph changed under the cached network: reload and ask again."""


class MatrixTimes:
    """Node-to-node travel times for one process's road service."""

    def __init__(self) -> None:
        self._threads: int | None = None

    async def times(
        self, db: Any, network: RoadNetwork, region: str, sources: list[int], targets: list[int]
    ) -> dict[tuple[int, int], float]:
        """The time from each source node to each target node, keyed (source, target), in the
        process or by the CCH, whichever should cost less; absent where no road joins them.
        ``Reimported`` when the graph is no longer the network's."""
        name = graph_name(region)
        pairs = pairs_of(sources, targets)
        threads = await self._graph_threads(db)
        if cch_ms(len(pairs), threads) < in_process_ms(network, sources, targets):
            found, imports = await cch_times(db, name, pairs, threads)
            # Every pair of the largest strongly connected component has a route: a missing
            # one means the graph may have been re-imported under the network.
            if imports - {network.import_id} or (
                len(found) < len(pairs) and await read_meta(db, name) != network.import_id
            ):
                raise Reimported
            return found | {(a, a): 0.0 for a in set(sources) & set(targets)}
        return await _search_checked(db, network, name, sources, targets)

    async def _graph_threads(self, db: Any) -> int:
        """How many queries FalkorDB runs at once (its THREAD_COUNT, read once)."""
        if self._threads is None:
            with graph_errors():
                reply = await db.connection.execute_command("GRAPH.CONFIG", "GET", "THREAD_COUNT")
                self._threads = max(1, int(reply[1]))
        return self._threads


async def _search_checked(
    db: Any, network: RoadNetwork, name: str, sources: list[int], targets: list[int]
) -> dict[tuple[int, int], float]:
    """Check with one small query that the network's weights are still the graph's (reading
    the roads under traffic again when another process changed them), then search.
    ``Reimported`` when the graph is another import. The check is made at most every
    ``VERSION_CHECK_S`` (always while the network's weights are known to lag: a traffic
    write of this process that was not the graph's next one).

    The check runs before the search, not beside it: a check task left beside the search
    went with a rare hang of the event loop's teardown (seen in two CI runs, one per
    session), and a slow host pays 1.5-2 ms for it (``ontheway bench roads``, README)."""
    now = time.monotonic()
    if network.weights_version < 0 or now - network.version_checked_at >= VERSION_CHECK_S:
        version = await read_version(db, name)
        if version is None or version[0] != network.import_id:
            raise Reimported
        if version[1] != network.weights_version:
            await refresh_weights(db, network, name, version[1])
        network.version_checked_at = now
    return await _search(network, sources, targets)


async def refresh_weights(db: Any, network: RoadNetwork, name: str, version: int) -> None:
    """Read the roads under traffic into the network, which then holds the graph's weights
    after ``version`` traffic writes (or later ones: the next check reads them again)."""
    road_ids, times_s = await read_traffic(db, name)
    network.reset_traffic(road_ids, times_s, version)


async def _search(
    network: RoadNetwork, sources: list[int], targets: list[int]
) -> dict[tuple[int, int], float]:
    """``network.travel_times``, in the event loop or a thread (``INLINE_SEARCHES``)."""
    if min(len(set(sources)), len(set(targets))) <= INLINE_SEARCHES:
        return network.travel_times(sources, targets)
    return await asyncio.to_thread(network.travel_times, sources, targets)


def pairs_of(sources: list[int], targets: list[int]) -> list[tuple[int, int]]:
    """The distinct pairs of different nodes a matrix needs."""
    return sorted({(a, b) for a in set(sources) for b in set(targets) if a != b})


def in_process_ms(network: RoadNetwork, sources: list[int], targets: list[int]) -> float:
    """The estimated milliseconds of searching the matrix in the process (none for a start
    whose search is kept: it answers without searching, most of the time)."""
    starts, ends, backward = plan_searches(sources, targets)
    starts = network.unsearched(starts, backward)
    return float(network.nodes_within(starts, ends, REACH).sum()) * NODE_MS


def cch_ms(pairs: int, threads: int) -> float:
    """The estimated milliseconds of ``pairs`` CCH searches over ``threads`` server threads."""
    return pairs * CCH_PAIR_MS / threads


async def cch_times(
    db: Any, name: str, pairs: list[tuple[int, int]], threads: int
) -> tuple[dict[tuple[int, int], float], set[str]]:
    """The CCH's time for each pair (absent: no route), in as many queries as the server has
    threads, asked at once; and the import ids the rows came from."""
    if not pairs:
        return {}, set()
    parts = min(len(pairs), threads)
    replies = await asyncio.gather(
        *(
            read_rows(db, name, _PAIRS_QUERY, {"pairs": [list(p) for p in pairs[i::parts]]})
            for i in range(parts)
        )
    )
    rows = [row for reply in replies for row in reply]
    return {(a, b): w for _, a, b, w in rows}, {row[0] for row in rows}
