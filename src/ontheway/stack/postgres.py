"""The local PostgreSQL cluster: initdb, start, stop, one database per shard with PostGIS.

As root the cluster runs as the ``postgres`` system user, because initdb refuses root.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from ontheway.errors import ConfigurationError, DependencyUnavailable, MissingPrerequisite
from ontheway.stack.process import cmdline, log_tail, pid_alive, read_pid, stop_pid, write_pid

APP_ROLE = "ontheway"
INSTALL_HINT = "run `make setup`, or: apt-get install postgresql postgresql-{major}-postgis-3"


def database_name(shard: str) -> str:
    """Name of the local database that holds one shard."""
    return f"ontheway_{shard}"


def find_bindir(override: Path | None = None) -> Path:
    """Find the PostgreSQL server binaries: the override, else Debian's newest major version."""
    candidates: list[Path] = []
    if override is not None:
        candidates.append(override)
    else:
        debian = sorted(
            Path("/usr/lib/postgresql").glob("*/bin"),
            key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
            reverse=True,
        )
        candidates.extend(debian)
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "pg_ctl").is_file():
            return bindir
    raise MissingPrerequisite(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: "
        + INSTALL_HINT.format(major="<version>")
    )


def server_major(bindir: Path) -> int:
    """Major version of the PostgreSQL server in ``bindir``."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"(\d+)", out)
    if not match:
        raise ConfigurationError(f"cannot read the PostgreSQL version from {out!r}")
    return int(match.group(1))


def check_postgis(bindir: Path) -> None:
    """Refuse to go on without the PostGIS build for this PostgreSQL major version."""
    major = server_major(bindir)
    sharedir = subprocess.run(
        [str(bindir / "postgres"), "-C", "sharedir", "-D", "/nonexistent"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    places = [Path(sharedir)] if sharedir else []
    places.append(Path(f"/usr/share/postgresql/{major}"))
    if not any((p / "extension" / "postgis.control").is_file() for p in places):
        raise MissingPrerequisite(
            f"PostGIS for PostgreSQL {major} is not installed: " + INSTALL_HINT.format(major=major)
        )


@dataclass(frozen=True)
class PostgresStack:
    """A PostgreSQL cluster under ``root`` listening on 127.0.0.1:``port``."""

    root: Path
    port: int
    shards: Sequence[str]
    bindir_override: Path | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        return self.root / "run"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    @property
    def pid_file(self) -> Path:
        return self.root / "ontheway.pid"

    @property
    def marker(self) -> Path:
        return self.root / "initialized"

    def dsn(self, shard: str, user: str = APP_ROLE) -> str:
        """The DSN of one shard's database on this cluster."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database_name(shard)}"

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    # -- running ---------------------------------------------------------------

    def running_pid(self) -> int | None:
        """PID of our postmaster if it runs (from our PID file, else postmaster.pid)."""
        for path in (self.pid_file, self.data_dir / "postmaster.pid"):
            pid = read_pid(path)
            if pid and pid_alive(pid) and self._is_ours(pid):
                return pid
        return None

    def _is_ours(self, pid: int) -> bool:
        args = cmdline(pid)
        return (
            bool(args)
            and "postgres" in Path(args[0]).name
            and str(self.data_dir.resolve()) in " ".join(args)
        )

    def up(self) -> str:
        """Start the cluster (initialising it first if needed); idempotent."""
        bindir = find_bindir(self.bindir_override)
        check_postgis(bindir)
        pid = self.running_pid()
        if pid is not None:
            write_pid(self.pid_file, pid)
            self._ensure_databases()
            return f"already running (pid {pid})"
        if not self.marker.is_file():
            self._initdb(bindir)
        self.pid_file.unlink(missing_ok=True)
        self._as_owner(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir.resolve()),
                "-l",
                str(self.log_file.resolve()),
                "-w",
                "-t",
                "60",
                "-s",
                "-o",
                f"-p {self.port}",
                "start",
            ],
            what="start PostgreSQL",
        )
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid is None or not pid_alive(pid):
            raise DependencyUnavailable(
                f"PostgreSQL did not start; log tail:\n{log_tail(self.log_file)}"
            )
        write_pid(self.pid_file, pid)
        self._ensure_databases()
        return f"started (pid {pid})"

    def down(self) -> str:
        """Stop the postmaster that ``up`` started, by PID (fast shutdown)."""
        pid = self.running_pid()
        self.pid_file.unlink(missing_ok=True)
        if pid is None:
            return "not running"
        killed = stop_pid(pid, signal.SIGINT, timeout_s=60)
        return f"stopped (pid {pid}{', killed' if killed else ''})"

    # -- initialisation ----------------------------------------------------------

    def _owner(self) -> str | None:
        """The system user the cluster runs as: ``postgres`` when we are root."""
        return "postgres" if os.geteuid() == 0 else None

    def _as_owner(self, args: list[str], what: str) -> None:
        owner = self._owner()
        env = {**os.environ, "LC_ALL": "C.UTF-8"}
        if owner:
            env["HOME"] = pwd.getpwnam(owner).pw_dir
        result = subprocess.run(
            args, user=owner, group=owner, capture_output=True, text=True, env=env, cwd="/"
        )
        if result.returncode != 0:
            raise DependencyUnavailable(
                f"could not {what}: {result.stderr.strip() or result.stdout.strip()}\n"
                f"log tail:\n{log_tail(self.log_file)}"
            )

    def _initdb(self, bindir: Path) -> None:
        # No marker means initdb never finished: whatever is there held no data yet.
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        owner = self._owner()
        if owner:
            _let_user_traverse(self.root.resolve(), owner)
            for path in (self.root, self.socket_dir):
                shutil.chown(path, owner, owner)
        self._as_owner(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir.resolve()),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            what="initialise the PostgreSQL cluster (initdb)",
        )
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(
                "\n# ontheway local stack\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.socket_dir.resolve()}'\n"
                "max_connections = 200\n"
                "shared_buffers = 512MB\n"
                "timezone = 'UTC'\n"
            )
        self.marker.write_text("initdb done\n")

    def _ensure_databases(self) -> None:
        try:
            with psycopg.connect(self.admin_dsn(), autocommit=True, connect_timeout=5) as conn:
                exists = conn.execute(
                    "SELECT 1 FROM pg_roles WHERE rolname = %s", (APP_ROLE,)
                ).fetchone()
                if not exists:
                    conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(APP_ROLE)))
                for shard in self.shards:
                    name = database_name(shard)
                    if not conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (name,)
                    ).fetchone():
                        conn.execute(
                            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                                sql.Identifier(name), sql.Identifier(APP_ROLE)
                            )
                        )
                    with psycopg.connect(self.admin_dsn(name), autocommit=True) as db:
                        db.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        except psycopg.Error as exc:
            raise DependencyUnavailable(f"could not prepare the shard databases: {exc}") from exc


def _let_user_traverse(path: Path, user: str) -> None:
    """Give 'others' the search bit on the ancestors of ``path`` so ``user`` can reach it."""
    uid = pwd.getpwnam(user).pw_uid
    for parent in [path, *path.parents]:
        info = parent.stat()
        if info.st_uid != uid and not info.st_mode & stat.S_IXOTH:
            parent.chmod(info.st_mode | stat.S_IXOTH)
