import bz2
from pathlib import Path

import pytest

from ontheway.roads.errors import BadMapFile
from ontheway.roads.osm import read_osm

DATA = Path(__file__).parents[1] / "data" / "osm"
MONACO = DATA / "monaco.osm.pbf"
WEST_OAKLAND = DATA / "west-oakland.osm.bz2"
SF = DATA / "san-francisco-downtown-drive.osm.bz2"


def test_the_three_formats_are_read() -> None:
    assert len(read_osm(SF).ways) == 912  # of 914 car ways, 2 are access=private
    assert len(read_osm(WEST_OAKLAND).ways) == 365
    assert len(read_osm(MONACO).ways) == 1702


def test_uncompressed_xml_is_read(tmp_path: Path) -> None:
    plain = tmp_path / "sf.osm"
    plain.write_bytes(bz2.decompress(SF.read_bytes()))
    assert len(read_osm(plain).ways) == 912


def test_nodes_missing_from_the_file_have_no_coordinates() -> None:
    ghosts = [w for w in read_osm(WEST_OAKLAND).ways if all(c is None for c in w.coords)]
    assert len(ghosts) == 89
    assert any(w.tags.get("name") == "Crowsnest Highway" for w in ghosts)


def test_restrictions_with_a_via_node_are_read_and_the_others_counted() -> None:
    oakland = read_osm(WEST_OAKLAND)
    assert len(oakland.restrictions) == 3
    assert oakland.unusable_restrictions == 2  # relations with only a "from" member
    assert {r.kind for r in oakland.restrictions} == {"no_left_turn", "no_right_turn"}
    monaco = read_osm(MONACO)
    assert len(monaco.restrictions) == 27
    assert sum(r.mandatory for r in monaco.restrictions) == 23


def test_a_file_that_is_not_osm_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "notes.osm"
    bad.write_text("hello, these are not roads\n")
    with pytest.raises(BadMapFile, match="not a readable OpenStreetMap file"):
        read_osm(bad)


def test_an_empty_file_is_refused(tmp_path: Path) -> None:
    for name in ("empty.osm", "empty.osm.pbf"):
        (tmp_path / name).touch()
        with pytest.raises(BadMapFile, match="the file is empty"):
            read_osm(tmp_path / name)


def test_a_truncated_pbf_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes(MONACO.read_bytes()[:300_000])
    with pytest.raises(BadMapFile, match="unexpected EOF"):
        read_osm(cut)


def test_a_truncated_bz2_is_refused(tmp_path: Path) -> None:
    cut = tmp_path / "cut.osm.bz2"
    cut.write_bytes(WEST_OAKLAND.read_bytes()[:20_000])
    with pytest.raises(BadMapFile, match="bzip2"):
        read_osm(cut)


def test_a_file_without_car_roads_is_refused(tmp_path: Path) -> None:
    empty_map = tmp_path / "nothing.osm"
    empty_map.write_text('<?xml version="1.0"?><osm version="0.6"></osm>')
    with pytest.raises(BadMapFile, match="no road that cars may drive on"):
        read_osm(empty_map)


def test_a_missing_file_or_a_foreign_suffix_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadMapFile, match="no such file"):
        read_osm(tmp_path / "absent.osm.pbf")
    other = tmp_path / "roads.csv"
    other.write_text("a,b\n")
    with pytest.raises(BadMapFile, match="not an OpenStreetMap file name"):
        read_osm(other)
