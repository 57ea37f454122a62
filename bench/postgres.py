"""A throwaway PostgreSQL cluster (for the tests and the decision-log benchmark): Debian's
binaries, a temporary directory, a free port.

PostgreSQL refuses to run as root (CI runs as root), so there the server runs as ``nobody``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.server import free_port

PG_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
RUN_AS = "nobody"


def pg_binary(name: str) -> str | None:
    for directory in PG_BIN_DIRS:
        if (directory / name).exists():
            return str(directory / name)
    return shutil.which(name)


def available() -> bool:
    """Whether the binaries are here; in CI (CI=true) they must be, so a missing package fails
    the run instead of skipping its tests unseen."""
    found = pg_binary("initdb") is not None and pg_binary("pg_ctl") is not None
    if not found and os.environ.get("CI") == "true":
        raise RuntimeError("CI needs PostgreSQL's binaries (apt-get install postgresql)")
    return found


@dataclass
class Cluster:
    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(
            str(pg_binary("pg_ctl")),
            "-D",
            str(self.directory / "data"),
            "-l",
            str(self.directory / "server.log"),
            "-o",
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=on",
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        self._run(str(pg_binary("pg_ctl")), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop")

    def log(self) -> str:
        return (self.directory / "server.log").read_text(errors="replace")


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    directory = Path(tempfile.mkdtemp(prefix="garment-sorter-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, RUN_AS)
    cluster = Cluster(directory, free_port())
    cluster._run(
        str(pg_binary("initdb")), "-D", str(directory / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8"
    )
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.SubprocessError):
            cluster.stop("immediate")
        shutil.rmtree(directory, ignore_errors=True)
