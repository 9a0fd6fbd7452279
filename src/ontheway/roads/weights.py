"""Writing traffic factors into a region's road graph (FalkorDB); see ``roads.traffic`` for why
a write is shaped as it is."""

from __future__ import annotations

from dataclasses import dataclass

from falkordb.asyncio import FalkorDB

from ontheway.roads.store import graph_errors
from ontheway.roads.traffic import WritePlan

# One query, so one re-customisation (or one rebuild) of the CCH index. The RoadMap match
# makes the write conditional on the import the road ids were chosen from: after a re-import
# the same ids name other roads, and nothing is written. A padding row ([id, null, null])
# rewrites the road's own weight, which counts as a change for the index. The write counts
# itself in RoadMap.weights, which tells the processes holding the weights that they changed.
_WRITE_WEIGHTS = """
MATCH (m:RoadMap {import_id: $import_id})
UNWIND $rows AS row
MATCH ()-[r:ROAD {id: row[0]}]->()
SET r.traffic_factor = coalesce(row[1], r.traffic_factor),
    r.time_s = coalesce(row[2], r.time_s)
WITH m, count(r) AS written
SET m.weights = coalesce(m.weights, 0) + 1
RETURN written, m.weights
"""


@dataclass(frozen=True)
class WeightsWritten:
    """What one write did: roads changed, roads written in all, whether the index was rebuilt
    whole, whether the graph was still the import the ids came from, and the graph's count
    of traffic writes after this one."""

    changed: int
    written: int
    full_rebuild: bool
    applied: bool
    version: int = 0


async def write_weights(db: FalkorDB, name: str, import_id: str, plan: WritePlan) -> WeightsWritten:
    """Write the plan's rows into the graph ``name`` if it still holds ``import_id``."""
    with graph_errors():
        reply = await db.select_graph(name).query(
            _WRITE_WEIGHTS, {"import_id": import_id, "rows": plan.rows}
        )
    written, version = (int(v) for v in reply.result_set[0]) if reply.result_set else (0, 0)
    return WeightsWritten(plan.changed, written, plan.full_rebuild, written > 0, version)
