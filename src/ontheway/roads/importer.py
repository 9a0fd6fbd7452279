"""Importing an OpenStreetMap extract into a region's road graph: read, build, write, index."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
from falkordb.asyncio import FalkorDB

from ontheway.regions import BBox
from ontheway.roads.errors import BadMapFile
from ontheway.roads.graph import ImportSummary, build_graph
from ontheway.roads.osm import Progress, read_osm
from ontheway.roads.restrictions import apply_restrictions
from ontheway.roads.store import graph_name, write_graph


async def import_osm(
    db: FalkorDB,
    region: str,
    path: Path,
    *,
    graph: str | None = None,
    bbox: BBox | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    """Import the car roads of ``path`` as the road graph of ``region`` (replacing it).

    ``graph`` overrides the graph's name (tests use their own). The caller checks that the
    region exists; bad files, and maps mostly outside ``bbox`` (the region's box), raise
    ``BadMapFile`` before anything is written.
    """
    name = graph or graph_name(region)
    started = time.perf_counter()
    extract = await asyncio.to_thread(read_osm, Path(path), progress)
    plain, report = await asyncio.to_thread(build_graph, extract)
    if bbox is not None:
        inside = (
            (plain.lat >= bbox.min_lat)
            & (plain.lat <= bbox.max_lat)
            & (plain.lng >= bbox.min_lng)
            & (plain.lng <= bbox.max_lng)
        )
        if inside.mean() < 0.5:
            raise BadMapFile(
                f"{path}: {100 * (1 - inside.mean()):.0f} % of the map's intersections lie "
                f"outside the bounding box of region {region!r}: is it the right region?",
                field="region",
            )
    roads, turns = await asyncio.to_thread(apply_restrictions, plain, extract.restrictions)
    count, labels = await asyncio.to_thread(roads.strong_components)
    largest = int(np.bincount(labels).max()) if len(labels) else 0
    read_s = time.perf_counter() - started
    write_s, index_s = await write_graph(
        db, name, roads, region=region, source=Path(path).name, progress=progress
    )
    return ImportSummary(
        region=region,
        graph=name,
        source=str(path),
        nodes=roads.node_count,
        roads=roads.road_count,
        components=count,
        largest_component_nodes=largest,
        car_ways=report.car_ways,
        dropped_ways=report.dropped_ways,
        trimmed_ways=report.trimmed_ways,
        restrictions=turns.applied,
        unusable_restrictions=extract.unusable_restrictions + turns.unusable,
        split_intersections=turns.split_nodes,
        read_s=round(read_s, 3),
        write_s=round(write_s, 3),
        index_s=round(index_s, 3),
    )
