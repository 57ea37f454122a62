"""A real `garment-sorter serve` in a subprocess on a free loopback port, and what it costs (CPU, RSS).

Shared by the benchmarks and the tests that need a real server (tests import it from here)."""

from __future__ import annotations

import contextlib
import os
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
        return sock.getsockname()[1]


@dataclass
class Server:
    process: subprocess.Popen
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(env: dict[str, str] | None = None, timeout_s: float = 180.0, nice: int = 0) -> Server:
    """`garment-sorter serve` on a free port; returns once /readyz answers 200."""
    port = free_port()
    log_file = tempfile.NamedTemporaryFile(prefix="garment-sorter-", suffix=".log", delete=False)
    command = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    if nice:
        command = ["nice", "-n", str(nice), *command]
    process = subprocess.Popen(
        command,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
        stdout=log_file,
        stderr=subprocess.STDOUT,
        cwd=REPO,
    )
    server = Server(process, f"http://127.0.0.1:{port}", Path(log_file.name))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{server.log()[-3000:]}")
        try:
            with urllib.request.urlopen(server.url + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    stop_server(server)
    raise TimeoutError(f"server not ready within {timeout_s} s:\n{server.log()[-3000:]}")


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


def port_of(server: Server) -> int:
    return int(server.url.rsplit(":", 1)[1])
