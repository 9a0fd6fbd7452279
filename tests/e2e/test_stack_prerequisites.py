"""`ontheway stack up` stops with one message when a prerequisite of the stack is missing.

Each test runs the CLI on a state directory and ports of its own, against fake PostgreSQL
binaries, so that it neither starts nor stops the suite's stack.
"""

import os
from pathlib import Path

from ontheway.bench.common import free_port
from tests.helpers import run_cli

# Answers what `check_postgis` asks the server: its version, and its share directory.
FAKE_POSTGRES = """#!/bin/sh
case "$1" in
  --version) echo "postgres (PostgreSQL) {major}.0" ;;
  -C) echo "{sharedir}" ;;
  *) echo "fake postgres: unexpected $*" >&2; exit 1 ;;
esac
"""
# Must never run: the check comes before initdb and pg_ctl.
REFUSE = '#!/bin/sh\necho "fake $0 must not run" >&2\nexit 1\n'


def fake_bindir(root: Path, major: int) -> Path:
    """PostgreSQL binaries of version ``major`` whose share directory has no PostGIS."""
    bindir, sharedir = root / "bin", root / "share"
    (sharedir / "extension").mkdir(parents=True)
    (sharedir / "extension" / "plpgsql.control").write_text("# not PostGIS\n")
    bindir.mkdir()
    scripts = {
        "postgres": FAKE_POSTGRES.format(major=major, sharedir=sharedir),
        "initdb": REFUSE,
        "pg_ctl": REFUSE,
    }
    for name, text in scripts.items():
        (bindir / name).write_text(text)
        (bindir / name).chmod(0o755)
    return bindir


def test_a_missing_postgis_is_one_message_naming_the_package_to_install(tmp_path: Path) -> None:
    # A major version with no /usr/share/postgresql/<major>, the check's other place to look.
    major = 99
    assert not Path(f"/usr/share/postgresql/{major}").exists()
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONTHEWAY_")}
    env.update(
        ONTHEWAY_STATE_DIR=str(state),
        ONTHEWAY_STACK_PG_BINDIR=str(fake_bindir(tmp_path / "pg", major)),
        ONTHEWAY_STACK_PG_PORT=str(free_port()),
        ONTHEWAY_STACK_REDIS_PORT=str(free_port()),
    )
    result = run_cli("stack", "up", env=env, inherit=False)
    assert result.returncode == 2, result.stderr
    # One message and nothing else (the console wraps it at 80 columns).
    assert " ".join(result.stderr.split()) == (
        f"error: PostGIS for PostgreSQL {major} is not installed: run `make setup`, "
        f"or: apt-get install postgresql postgresql-{major}-postgis-3"
    )
    # Nothing was started or written: no cluster, no Redis, no env file.
    assert sorted(p.name for p in state.iterdir()) == []
