import os
import subprocess
import sys
from pathlib import Path

from ontheway.settings import Settings

DATA = Path(__file__).parents[1] / "data" / "osm"


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ontheway", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )


def test_roads_import_prints_a_summary_of_what_it_wrote(settings: Settings) -> None:
    result = run_cli(
        "roads", "import", "--region", "sf", str(DATA / "san-francisco-downtown-drive.osm.bz2")
    )
    assert result.returncode == 0, result.stderr
    assert "roads:{sf}" in result.stdout
    assert "2,819" in result.stdout  # nodes
    assert "4,463" in result.stdout  # directed roads


def test_roads_import_into_an_unknown_region_fails_with_a_message(settings: Settings) -> None:
    result = run_cli("roads", "import", "--region", "atlantis", str(DATA / "monaco.osm.pbf"))
    assert result.returncode == 1
    assert "unknown region 'atlantis'" in result.stderr
    assert "Traceback" not in result.stderr


def test_roads_import_of_a_bad_file_fails_with_a_message(
    settings: Settings, tmp_path: Path
) -> None:
    cut = tmp_path / "cut.osm.pbf"
    cut.write_bytes((DATA / "monaco.osm.pbf").read_bytes()[:200_000])
    empty = tmp_path / "empty.osm"
    empty.touch()
    text = tmp_path / "notes.osm.bz2"
    text.write_text("not compressed, not a map")
    for path, message in [
        (cut, "unexpected EOF"),
        (empty, "the file is empty"),
        (text, "not a readable OpenStreetMap file"),
    ]:
        result = run_cli("roads", "import", "--region", "sf", str(path))
        assert result.returncode == 1, path
        assert message in " ".join(result.stderr.split())  # rich wraps at a path's length
        assert "Traceback" not in result.stderr


def test_roads_import_of_a_map_of_another_region_fails_with_a_message(
    settings: Settings,
) -> None:
    result = run_cli("roads", "import", "--region", "sf", str(DATA / "monaco.osm.pbf"))
    assert result.returncode == 1
    assert "outside the bounding box of region 'sf'" in " ".join(result.stderr.split())
    assert "Traceback" not in result.stderr


def test_bench_roads_runs_on_a_small_extract_and_finds_routes_equal_to_scipys(
    settings: Settings,
) -> None:
    result = run_cli(
        "bench", "roads", "--file", str(DATA / "west-oakland.osm.bz2"), "--routes", "20"
    )
    assert result.returncode == 0, result.stderr
    assert "route incl." in result.stdout
    mismatch_row = next(line for line in result.stdout.splitlines() if "routes whose" in line)
    assert "│ 0 " in mismatch_row


def test_roads_traffic_sets_a_factor_on_an_area_and_says_how_many_roads(settings: Settings) -> None:
    imported = run_cli(
        "roads", "import", "--region", "sf", str(DATA / "san-francisco-downtown-drive.osm.bz2")
    )
    assert imported.returncode == 0, imported.stderr
    result = run_cli(
        "roads", "traffic", "--region", "sf", "--factor", "1.5", "--area", "37.79,-122.40,300"
    )
    assert result.returncode == 0, result.stderr
    assert "traffic factor 1.5 on" in result.stdout
    bad = run_cli("roads", "traffic", "--region", "sf", "--factor", "25", "--road", "1")
    assert bad.returncode == 1
    assert "edges.0.traffic_factor" in bad.stderr and "Traceback" not in bad.stderr
    cleared = run_cli(
        "roads", "traffic", "--region", "sf", "--factor", "1", "--area", "37.79,-122.40,20000"
    )
    assert cleared.returncode == 0, cleared.stderr
