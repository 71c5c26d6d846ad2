"""A throwaway PostgreSQL cluster for the store tests and the benches (`bench/replicas.py`):
initdb into a temporary folder, a server on a free loopback port (its socket in that folder,
trust auth, no fsync), a fresh database per caller, everything stopped and deleted at the end.
Not used by the app itself, which only connects to a server it is given (`--store-url`).

initdb and the server refuse to run as root; as root they run as the `postgres` user (made
by Debian's `postgresql` package), via runuser, in a folder handed to that user.
"""
from __future__ import annotations

import glob
import importlib.util
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SERVER_SETTINGS = ("-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
                   "-c max_connections=200")


def find_bindir() -> Path | None:
    """The folder holding initdb: on PATH, or Debian's /usr/lib/postgresql/<version>/bin."""
    on_path = shutil.which("initdb")
    if on_path:
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    folder: Path
    port: int
    as_user: list[str]  # ["runuser", "-u", "postgres", "--"] when running as root
    _names: itertools.count = field(default_factory=lambda: itertools.count(1))

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*self.as_user, *args], capture_output=True, text=True,
                              timeout=60, check=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://amend@127.0.0.1:{self.port}/{dbname}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg  # the fixture skips before this where psycopg is missing

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8'")
        return self.url(name)

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate",
                  "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster() -> tuple[Cluster | None, str]:
    """A running cluster, or None and the reason it could not be started."""
    if importlib.util.find_spec("psycopg") is None:
        return None, "psycopg is not installed (pip install -r requirements.txt)"
    bindir = find_bindir()
    if bindir is None:
        return None, "PostgreSQL is not installed (no initdb; Debian: apt-get install postgresql)"
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:  # initdb refuses root
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            return None, "running as root and there is no 'postgres' user to run initdb as"
        if shutil.which("runuser") is None:
            return None, "running as root and runuser is missing to run initdb as 'postgres'"
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="amend-pg-"))
    if owner is not None:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(bindir, folder, _free_port(), as_user)
    steps = [
        [str(bindir / "initdb"), "-D", str(cluster.data), "-U", "amend", "-A", "trust",
         "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        [str(bindir / "pg_ctl"), "-D", str(cluster.data), "-l", str(folder / "server.log"),
         "-w", "-t", "30", "-o",
         f"-c listen_addresses=127.0.0.1 -p {cluster.port} -k {folder} {SERVER_SETTINGS}",
         "start"],
    ]
    for step in steps:
        try:
            done = cluster._run(*step)
        except (OSError, subprocess.TimeoutExpired) as exc:
            done = subprocess.CompletedProcess(step, 1, "", str(exc))
        if done.returncode != 0:
            log = folder / "server.log"
            tail = (done.stderr or done.stdout).strip()[-400:]
            if log.is_file():
                tail += " | " + log.read_text(errors="replace").strip()[-400:]
            cluster.stop()
            return None, f"{Path(step[0]).name} failed: {tail}"
    return cluster, ""
