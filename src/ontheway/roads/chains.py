"""Chains of a road graph: the runs of nodes that only join two neighbours, for searching a
smaller graph.

Two in five nodes of an OpenStreetMap road graph lie in the middle of a street, joined to
exactly two neighbours (Mexico City: 39,737 of 94,653). A shortest path that enters such a
run of nodes leaves it at the other end, so a search needs only the *core* (every other node)
and one road per direction for each chain, its roads' times added up: on Mexico City 58 % of
the nodes and 70 % of the roads. ``ontheway bench roads``, same run: 20 drivers anywhere on
the map searched on the core, 8.2 ms (most of the map); scipy's one whole search on every
node, 13.6 ms.

A point in a chain is reached from the chain's two ends, and leaves through them; a search
that starts in a chain starts at both ends at once, each at its cost along the chain. Pure
code: ``roads.search`` runs the searches.

A node's neighbours are counted without direction and without parallel roads or loops back
to the node itself; a run of chain nodes that closes on itself with no core node (an island
loop) is left in the core.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_matrix

from ontheway.roads.graph import RoadGraph


class Chains:
    """Where the chains of a graph lie, and how the core graph is put together from its
    roads: topology only, the same for any weights (``ChainWeights`` adds them)."""

    def __init__(self, graph: RoadGraph) -> None:
        n = self.node_count = graph.node_count
        runs = _runs(graph)
        lengths = np.fromiter((len(r) for r in runs), dtype=np.int64, count=len(runs))
        self.starts = np.zeros(len(runs) + 1, dtype=np.int64)
        """Where each chain begins in ``nodes``; one more entry, ``len(nodes)``, at the end."""
        np.cumsum(lengths, out=self.starts[1:])
        self.nodes = np.fromiter(
            (node for run in runs for node in run), dtype=np.int64, count=int(self.starts[-1])
        )
        """Every chain's nodes in order along it, both ends (core nodes) included."""
        self.chain_of = np.full(n, -1, dtype=np.int64)
        """Each node's chain, -1 for the core."""
        self.position = np.full(n, -1, dtype=np.int64)
        """Each chain node's index in ``nodes`` (-1 for the core)."""
        interior = np.ones(len(self.nodes), dtype=bool)
        interior[self.starts[:-1]] = False
        interior[self.starts[1:] - 1] = False
        self.chain_of[self.nodes[interior]] = np.repeat(np.arange(len(runs)), lengths - 2)
        self.position[self.nodes[interior]] = np.flatnonzero(interior)
        self.core = np.flatnonzero(self.chain_of < 0).astype(np.int64)
        """The core nodes, ascending; a core node's index in the core graph is its rank here."""
        self.core_rank = np.full(n, -1, dtype=np.int64)
        self.core_rank[self.core] = np.arange(len(self.core))

        # The roads of each step along the chains (from position i to i + 1, and back): the
        # cheapest of them is the step's cost; a step with none is one-way the other way.
        # (The step from a chain's last node to the next chain's first joins nothing.)
        by_pair = _ByPair(graph)
        last = np.zeros(len(self.nodes), dtype=bool)
        last[self.starts[1:] - 1] = True
        real = ~last[:-1]
        self._step_fwd = by_pair.cheapest_of(
            np.where(real, self.nodes[:-1], -1), np.where(real, self.nodes[1:], -1)
        )
        self._step_bwd = by_pair.cheapest_of(
            np.where(real, self.nodes[1:], -1), np.where(real, self.nodes[:-1], -1)
        )
        self.first = self.starts[:-1]
        self.last = self.starts[1:] - 1

        # The core graph's roads: roads between core nodes, and each chain that can be driven
        # end to end, one road each way (not a loop back to the same node).
        rank = self.core_rank
        direct = np.flatnonzero(
            (rank[graph.src] >= 0) & (rank[graph.dst] >= 0) & (graph.src != graph.dst)
        )
        ends_differ = self.nodes[self.first] != self.nodes[self.last]
        steps_per_chain = np.diff(self.starts) - 1
        self._along = np.flatnonzero(ends_differ & self._drivable(self._step_fwd, steps_per_chain))
        self._back = np.flatnonzero(ends_differ & self._drivable(self._step_bwd, steps_per_chain))
        self._direct = direct
        head = self.nodes[self.first]
        tail = self.nodes[self.last]
        src = np.concatenate([graph.src[direct], head[self._along], tail[self._back]])
        dst = np.concatenate([graph.dst[direct], tail[self._along], head[self._back]])
        size = len(self.core) + 1  # the last node: where a search starts (``ChainWeights``)
        self.forward = _Pattern(rank[src], rank[dst], size)
        self.backward = _Pattern(rank[dst], rank[src], size)

    @property
    def chain_count(self) -> int:
        return len(self.starts) - 1

    def _drivable(self, steps: _Cheapest, steps_per_chain: NDArray[np.int64]) -> NDArray[np.bool_]:
        """Whether each chain has a road for every one of its steps (in one direction)."""
        missing = np.zeros(len(self.nodes), dtype=np.int64)
        missing[:-1] = steps.missing
        missing[self.last] = 0  # the step from a chain's last node leads to no road
        counts = np.add.reduceat(missing, self.first) if len(self.first) else missing[:0]
        drivable: NDArray[np.bool_] = (counts == 0) & (steps_per_chain > 0)
        return drivable


class ChainWeights:
    """The chains' costs on one set of road weights, and the core graph that searches use,
    ``forward`` and ``backward`` (its roads reversed).

    Each has one node per core node plus, last, a start node whose two roads each search
    sets (``roads.search``): a search from a chain node starts from its chain's two ends at
    once, each at its cost along the chain."""

    def __init__(self, chains: Chains, weights: NDArray[np.float64]) -> None:
        self.chains = chains
        starts = chains.starts
        self._fwd, self._gaps_fwd = _chain_sums(chains._step_fwd.costs(weights), starts)
        self._bwd, self._gaps_bwd = _chain_sums(chains._step_bwd.costs(weights), starts)
        values = np.concatenate(
            [
                weights[chains._direct],
                self._fwd[chains.last[chains._along]],
                self._bwd[chains.last[chains._back]],
            ]
        )
        self.forward = chains.forward.graph(values)
        self.backward = chains.backward.graph(values)
        self.core_rank = chains.core_rank

    def cost_along(self, frm: NDArray[np.int64], to: NDArray[np.int64]) -> NDArray[np.float64]:
        """The cost from positions ``frm`` to positions ``to`` of the same chains, along them
        (inf where a one-way road forbids it)."""
        lo, hi = np.minimum(frm, to), np.maximum(frm, to)
        fwd = np.where(
            self._gaps_fwd[hi] - self._gaps_fwd[lo] > 0, np.inf, self._fwd[hi] - self._fwd[lo]
        )
        bwd = np.where(
            self._gaps_bwd[hi] - self._gaps_bwd[lo] > 0, np.inf, self._bwd[hi] - self._bwd[lo]
        )
        result: NDArray[np.float64] = np.where(to >= frm, fwd, bwd)
        return result


def _runs(graph: RoadGraph) -> list[list[int]]:
    """The chains' nodes in order, each from a core node to a core node."""
    n = graph.node_count
    lo = np.minimum(graph.src, graph.dst)
    hi = np.maximum(graph.src, graph.dst)
    pairs = np.unique(lo[lo != hi] * n + hi[lo != hi])
    a, b = pairs // n, pairs % n
    degree = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    inner = degree == 2
    # Each node's neighbours, without direction: a chain node's two at [first], [first + 1].
    ends = np.concatenate([a, b])
    order = np.argsort(ends, kind="stable")
    begins, neighbour = ends[order], np.concatenate([b, a])[order]
    first = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(degree, out=first[1:])

    visited = np.zeros(n, dtype=bool)
    runs: list[list[int]] = []
    # A chain begins at a core node beside a chain node: walk on to the next core node.
    at_core = ~inner[begins] & inner[neighbour]
    inner_list, first_list, neighbour_list = inner.tolist(), first.tolist(), neighbour.tolist()
    for begin, step in zip(begins[at_core].tolist(), neighbour[at_core].tolist(), strict=True):
        if visited[step]:
            continue  # walked already, from its other end
        run, previous, node = [begin], begin, step
        while inner_list[node]:
            run.append(node)
            visited[node] = True
            i = first_list[node]
            one, two = neighbour_list[i], neighbour_list[i + 1]
            previous, node = node, (two if one == previous else one)
        run.append(node)
        runs.append(run)
    return runs  # chain nodes never visited (island loops) stay in the core


class _Cheapest:
    """For each of a list of slots, the roads that may fill it: its cost on given weights is
    the cheapest of them, inf when there is none."""

    def __init__(self, roads: NDArray[np.int64], slot_of_road: NDArray[np.int64], slots: int):
        order = np.argsort(slot_of_road, kind="stable")
        self._roads = roads[order]
        counts = np.bincount(slot_of_road, minlength=slots)
        self._filled = np.flatnonzero(counts > 0)
        bounds = np.zeros(slots + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        self._bounds = bounds[self._filled]
        self._slots = slots
        self.missing = (counts == 0).astype(np.int64)

    def costs(self, weights: NDArray[np.float64]) -> NDArray[np.float64]:
        result = np.full(self._slots, np.inf)
        if len(self._roads):
            result[self._filled] = np.minimum.reduceat(weights[self._roads], self._bounds)
        return result


class _ByPair:
    """A graph's roads by (from, to) node."""

    def __init__(self, graph: RoadGraph) -> None:
        self._n = graph.node_count
        keys = graph.src * self._n + graph.dst
        self._order = np.argsort(keys, kind="stable")
        self._keys = keys[self._order]

    def cheapest_of(self, frm: NDArray[np.int64], to: NDArray[np.int64]) -> _Cheapest:
        """Slots for the pairs ``frm[i] -> to[i]`` (-1: no pair, always inf)."""
        wanted = np.where(frm >= 0, frm * self._n + to, -1)
        lo = np.searchsorted(self._keys, wanted, side="left")
        hi = np.searchsorted(self._keys, wanted, side="right")
        counts = np.where(frm >= 0, hi - lo, 0)
        slot = np.repeat(np.arange(len(frm)), counts)
        offset = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        roads = self._order[np.repeat(lo, counts) + offset]
        return _Cheapest(roads, slot, len(frm))


class _Pattern:
    """The sparsity of a core graph: which roads (values) fill which entry, in CSR order, with
    two entries more for the start node's roads."""

    def __init__(self, src: NDArray[np.int64], dst: NDArray[np.int64], size: int) -> None:
        keys = src * size + dst
        unique, slot = np.unique(keys, return_inverse=True)
        self._values = _Cheapest(np.arange(len(keys)), slot.astype(np.int64), len(unique))
        rows = np.bincount(unique // size, minlength=size)
        indptr = np.zeros(size + 1, dtype=np.int64)
        np.cumsum(rows, out=indptr[1:])
        indptr[-1] += 2  # the start node (the last) has two roads
        self._indptr = indptr.astype(np.int32)
        self._indices = np.concatenate([unique % size, [size - 1, size - 1]]).astype(np.int32)
        self._size = size

    def graph(self, values: NDArray[np.float64]) -> csr_matrix:
        """The core graph with each entry the cheapest of its ``values``; the start node's two
        roads are loops until a search sets them (its own copy of the indices)."""
        data = np.concatenate([self._values.costs(values), [0.0, 0.0]])
        return csr_matrix(
            (data, self._indices.copy(), self._indptr), shape=(self._size, self._size), copy=False
        )


def _chain_sums(
    steps: NDArray[np.float64], starts: NDArray[np.int64]
) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """For each position, the sum of the finite steps and the count of missing ones from its
    chain's first node to it (``steps[i]`` joins positions i and i + 1)."""
    finite = np.where(np.isfinite(steps), steps, 0.0)
    sums = np.concatenate([[0.0], np.cumsum(finite)])
    gaps = np.concatenate([[0], np.cumsum(~np.isfinite(steps))])
    # Restart at each chain's first node.
    chain_lengths = np.diff(starts)
    sums = sums - np.repeat(sums[starts[:-1]], chain_lengths)
    gaps = gaps - np.repeat(gaps[starts[:-1]], chain_lengths)
    return sums, gaps.astype(np.int64)
