"""A real `garment-sorter serve` in a subprocess on a free loopback port, and what it costs (CPU, RSS).

Shared by the benchmarks and the tests that need a real server (tests import it from here)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


# --- a server in a subprocess -------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    data_dir: Path  # SORTER_DATA_DIR: its decision log
    own_data_dir: bool = False  # made for it, removed with it by running_server

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def server_environment(env: dict[str, str] | None) -> tuple[dict[str, str], bool]:
    """The server's environment, and whether its data directory was made for it (and is removed with it).

    Each server keeps its decisions in a directory of its own unless ``env`` says where: never the
    repo's data/, and never a directory this process's environment names for something else (a test
    session's default, an operator's real log), which would hand one server another's review queue."""
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    own_data_dir = "SORTER_DATA_DIR" not in (env or {})
    if own_data_dir:
        environment["SORTER_DATA_DIR"] = tempfile.mkdtemp(prefix="garment-sorter-data-")
    return environment, own_data_dir


def start_server(
    env: dict[str, str] | None = None, timeout_s: float = 180.0, nice: int = 0, wait_for: str = "/readyz"
) -> Server:
    """`garment-sorter serve` on a free port; returns once ``wait_for`` answers 200."""
    port = free_port()
    handle, log_name = tempfile.mkstemp(prefix="garment-sorter-", suffix=".log")
    os.close(handle)
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    environment, own_data_dir = server_environment(env)
    with open(log_name, "wb") as log_file:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            command,
            env=environment,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
    server = Server(process, port, Path(log_name), Path(environment["SORTER_DATA_DIR"]), own_data_dir)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + wait_for, timeout=1) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    stop_server(server)
    raise TimeoutError(f"{wait_for} not 200 within {timeout_s} s:\n{server.log()[-3000:]}")


def stop_server(server: Server, timeout_s: float = 60.0) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    return server.process.returncode


@contextlib.contextmanager
def running_server(env: dict[str, str] | None = None, nice: int = 0) -> Iterator[Server]:
    server = start_server(env, nice=nice)
    try:
        yield server
    finally:
        stop_server(server)
        server.log_path.unlink(missing_ok=True)
        if server.own_data_dir:
            shutil.rmtree(server.data_dir, ignore_errors=True)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc; None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
