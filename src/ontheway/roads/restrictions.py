"""Turn restrictions, built into the graph by splitting the few restricted intersections.

Why split nodes: the CCH index answers shortest paths on a plain weighted graph of nodes and
relationships; it has no notion of turn costs. Instead of routing on an edge-based graph
(every road a node: twice the size, and every route query would need translating), only the
intersections that are the ``via`` of a restriction are made turn-aware. Such an
intersection ``v`` is replaced by one node per road arriving at it ("at v, having come along
road e"); the road e now ends at its own copy, and from that copy leave only the roads that
e may turn onto. Everything else stays as it was, so the graph grows by a few nodes per
restriction, the CCH index works unchanged, and a shortest path on the split graph is the
shortest path that makes no forbidden turn.

Rules (OSM): ``no_*`` forbids the turn from ``from`` way onto ``to`` way at the via node;
``only_*`` forbids every other turn out of the ``from`` way there. When ``from`` and ``to``
are the same way (``no_u_turn``), only turning back the way one came is forbidden.

A route starting at a split intersection starts at one of its copies, and so obeys that
copy's turn rules for its first turn; a point is snapped to a copy only when the copy lies
in the largest strongly connected component, like any node.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from ontheway.roads.graph import RoadGraph
from ontheway.roads.osm import OsmRestriction


@dataclass(frozen=True)
class RestrictionReport:
    """How many restrictions changed the graph, and how many intersections were split."""

    applied: int
    unusable: int
    split_nodes: int


def _forbidden(graph: RoadGraph, rules: list[OsmRestriction], arriving: int, leaving: int) -> bool:
    """Whether turning from road ``arriving`` onto road ``leaving`` breaks one of ``rules``."""
    from_way = int(graph.osm_way_id[arriving])
    to_way = int(graph.osm_way_id[leaving])
    turning_back = graph.dst[leaving] == graph.src[arriving]
    for rule in rules:
        if rule.from_way != from_way:
            continue
        named = to_way == rule.to_way and (rule.from_way != rule.to_way or turning_back)
        if named != rule.mandatory:  # a named no_* turn, or an only_* rule's other turns
            return True
    return False


def apply_restrictions(
    graph: RoadGraph, restrictions: list[OsmRestriction]
) -> tuple[RoadGraph, RestrictionReport]:
    """The graph with every usable restriction built in (see the module docstring)."""
    index = {int(osm): i for i, osm in enumerate(graph.node_osm_id)}
    incoming: dict[int, list[int]] = defaultdict(list)
    outgoing: dict[int, list[int]] = defaultdict(list)
    for road, (a, b) in enumerate(zip(graph.src.tolist(), graph.dst.tolist(), strict=True)):
        outgoing[a].append(road)
        incoming[b].append(road)

    rules_at: dict[int, list[OsmRestriction]] = defaultdict(list)
    unusable = 0
    for rule in restrictions:
        via = index.get(rule.via_node)
        usable = via is not None and (
            any(graph.osm_way_id[e] == rule.from_way for e in incoming[via])
            and any(graph.osm_way_id[f] == rule.to_way for f in outgoing[via])
        )
        if via is None or not usable:
            unusable += 1
        else:
            rules_at[via].append(rule)
    if not rules_at:
        return graph, RestrictionReport(0, unusable, 0)

    # One copy of each split node per arriving road: copy_of[e] is the node road e ends at.
    n = graph.node_count
    copy_of: dict[int, int] = {}
    copy_base: list[int] = []
    for via in sorted(rules_at):
        for road in incoming[via]:
            copy_of[road] = n + len(copy_base)
            copy_base.append(via)

    def head(road: int) -> int:
        return copy_of.get(road, int(graph.dst[road]))

    kept: list[int] = []  # the original road each new road copies
    new_src: list[int] = []
    new_dst: list[int] = []
    for road in range(graph.road_count):
        start = int(graph.src[road])
        rules = rules_at.get(start)
        if rules is None:
            kept.append(road)
            new_src.append(start)
            new_dst.append(head(road))
            continue
        for arriving in incoming[start]:
            if not _forbidden(graph, rules, arriving, road):
                kept.append(road)
                new_src.append(copy_of[arriving])
                new_dst.append(head(road))

    base = np.array(copy_base, dtype=np.int64)
    picks = np.array(kept, dtype=np.int64)
    split = RoadGraph(
        node_osm_id=np.concatenate([graph.node_osm_id, graph.node_osm_id[base]]),
        lat=np.concatenate([graph.lat, graph.lat[base]]),
        lng=np.concatenate([graph.lng, graph.lng[base]]),
        src=np.array(new_src, dtype=np.int64),
        dst=np.array(new_dst, dtype=np.int64),
        distance_m=graph.distance_m[picks],
        base_time_s=graph.base_time_s[picks],
        time_s=graph.time_s[picks],
        speed_kph=graph.speed_kph[picks],
        road_class=[graph.road_class[r] for r in kept],
        name=[graph.name[r] for r in kept],
        osm_way_id=graph.osm_way_id[picks],
    )
    applied = sum(len(rules) for rules in rules_at.values())
    return split, RestrictionReport(applied, unusable, len(rules_at))
