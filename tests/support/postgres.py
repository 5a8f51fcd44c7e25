"""A throwaway PostgreSQL cluster for tests: initdb in a temporary folder, served on a
Unix socket in that folder (no TCP port to collide with), removed at the end.

Debian's ``postgresql`` package (``scripts/setup`` installs it) puts ``initdb`` and
``pg_ctl`` in /usr/lib/postgresql/<version>/bin. The server refuses to run as root, so
as root (CI, containers) the cluster belongs to the package's ``postgres`` user.
fsync is off: a test cluster that loses its data on a power cut loses nothing of value.
Each test gets a database of its own (:meth:`Cluster.new_database`).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import count
from pathlib import Path

_names = count()


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                      key=lambda p: int(Path(p).parts[-3]))
    return Path(versions[-1]).parent if versions else None


def unavailable_reason() -> str | None:
    """Why no test cluster can start here, or None if it can."""
    if postgres_bin() is None:
        return ("PostgreSQL is not installed (scripts/setup installs Debian's postgresql "
                "package where apt is available)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the server as"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (scripts/setup installs it)"
    return None


class Cluster:
    def __init__(self, folder: Path, bin_dir: Path) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.socket_dir = folder
        self.bin_dir = bin_dir
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        if self._as_postgres:
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8", "--locale=C")
        options = (f"-k {self.socket_dir} -c listen_addresses='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200 -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "60",
                  "-l", str(self.folder / "server.log"), "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def new_database(self) -> str:
        """A new empty database; its URL."""
        import psycopg

        name = f"test_{os.getpid()}_{next(_names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.split("/")[-1].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    bin_dir = postgres_bin()
    assert bin_dir is not None
    # Short: a Unix socket path must fit in 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="trpg-", dir="/tmp"))
    cluster = Cluster(folder, bin_dir)
    try:
        cluster.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    try:
        yield cluster
    finally:
        cluster.stop()
