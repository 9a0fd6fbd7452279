"""Reading OpenStreetMap files (.osm, .osm.bz2, .osm.gz, .osm.pbf) with pyosmium.

Keeps only what the road graph needs: the car roads (their tags and node locations) and the
turn restrictions. A node that the file does not contain (a way cut at the extract's border)
comes back as ``None`` in the way's coordinates; ``graph.build_graph`` trims or drops such ways.
Every failure of the reader becomes a ``BadMapFile`` that says what is wrong with the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import osmium

from ontheway.roads.errors import BadMapFile
from ontheway.roads.tags import CAR_HIGHWAYS, is_car_road

SUFFIXES = (".osm", ".osm.bz2", ".osm.gz", ".osm.pbf", ".pbf")
# The tags the graph uses; the rest are not copied out of the reader's buffers.
_KEPT_TAGS = (
    "highway",
    "name",
    "ref",
    "oneway",
    "junction",
    "maxspeed",
    "maxspeed:forward",
    "maxspeed:backward",
)

Progress = Callable[[str, int, int], None]
"""A progress callback: (phase, done, total); total 0 when unknown."""


@dataclass(frozen=True)
class OsmWay:
    """A car road as the file has it: node ids, their (lat, lng) or None when missing."""

    id: int
    tags: dict[str, str]
    node_ids: tuple[int, ...]
    coords: tuple[tuple[float, float] | None, ...]


@dataclass(frozen=True)
class OsmRestriction:
    """A turn restriction with a via node: ``no_*`` forbids, ``only_*`` mandates the turn."""

    id: int
    kind: str
    from_way: int
    via_node: int
    to_way: int

    @property
    def mandatory(self) -> bool:
        """Whether this is an ``only_*`` restriction (the one turn allowed)."""
        return self.kind.startswith("only_")


@dataclass
class OsmExtract:
    """The car roads and turn restrictions of one file."""

    ways: list[OsmWay] = field(default_factory=list)
    restrictions: list[OsmRestriction] = field(default_factory=list)
    unusable_restrictions: int = 0
    other_ways: int = 0


def _check_file(path: Path) -> None:
    name = path.name.lower()
    if not any(name.endswith(suffix) for suffix in SUFFIXES):
        raise BadMapFile(
            f"{path}: not an OpenStreetMap file name; use .osm, .osm.bz2, .osm.gz or .osm.pbf"
        )
    if not path.is_file():
        raise BadMapFile(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise BadMapFile(f"{path}: the file is empty")


def _restriction(rel: osmium.osm.Relation) -> OsmRestriction | None:
    kind = rel.tags.get("restriction") or rel.tags.get("restriction:motorcar") or ""
    if not (kind.startswith("no_") or kind.startswith("only_")):
        return None
    roles: dict[str, list[tuple[str, int]]] = {}
    for member in rel.members:
        roles.setdefault(member.role, []).append((member.type, member.ref))
    from_, via, to = roles.get("from", []), roles.get("via", []), roles.get("to", [])
    if len(from_) != 1 or len(via) != 1 or len(to) != 1:
        return None
    if from_[0][0] != "w" or via[0][0] != "n" or to[0][0] != "w":
        return None  # via-way restrictions are not supported; they are counted as unusable
    return OsmRestriction(rel.id, kind, from_[0][1], via[0][1], to[0][1])


def read_osm(path: Path, progress: Progress | None = None) -> OsmExtract:
    """Read the car roads and turn restrictions of an OSM file; ``BadMapFile`` on bad input."""
    path = Path(path)
    _check_file(path)
    extract = OsmExtract()
    kinds = osmium.osm.WAY | osmium.osm.RELATION
    try:
        reader = (
            osmium.FileProcessor(str(path))
            .with_locations()
            .with_filter(osmium.filter.EntityFilter(kinds))
        )
        for count, obj in enumerate(reader, start=1):
            if progress is not None and count % 5000 == 0:
                progress("read", len(extract.ways) + extract.other_ways, 0)
            if isinstance(obj, osmium.osm.Way):
                if obj.tags.get("highway") not in CAR_HIGHWAYS or not is_car_road(
                    {tag.k: tag.v for tag in obj.tags}
                ):
                    extract.other_ways += 1
                    continue
                node_ids = tuple(node.ref for node in obj.nodes)
                coords = tuple(
                    (node.location.lat, node.location.lon) if node.location.valid() else None
                    for node in obj.nodes
                )
                tags = {key: obj.tags[key] for key in _KEPT_TAGS if key in obj.tags}
                extract.ways.append(OsmWay(obj.id, tags, node_ids, coords))
            elif isinstance(obj, osmium.osm.Relation) and obj.tags.get("type") == "restriction":
                restriction = _restriction(obj)
                if restriction is None:
                    extract.unusable_restrictions += 1
                else:
                    extract.restrictions.append(restriction)
    except RuntimeError as exc:
        raise BadMapFile(f"{path}: not a readable OpenStreetMap file ({exc})") from None
    if progress is not None:
        total = len(extract.ways) + extract.other_ways
        progress("read", total, total)
    if not extract.ways:
        raise BadMapFile(f"{path}: the file holds no road that cars may drive on")
    return extract
