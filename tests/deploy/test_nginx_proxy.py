"""deploy/nginx/garment-sorter.conf in a real nginx in front of a real `garment-sorter serve`: the
config loads, a scanner's photo is answered through it, the scanner's X-Request-ID reaches the
service and comes back (nginx makes one when the scanner sends none), and a head that stalls is
answered 408 by nginx itself."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from deploy_helpers import DEPLOY, png, require_tool, start_served
from pg_cluster import wait_until

from bench.server import free_port, stop_server

pytestmark = pytest.mark.slow

CONF = DEPLOY / "nginx" / "garment-sorter.conf"
HEADER_TIMEOUT_S = 1  # the shipped 10 s, shortened for the test (the only line changed besides addresses)


def nginx_conf(upstream_port: int, listen_port: int, root: Path) -> str:
    site = CONF.read_text()
    site = site.replace("server api:8000;", f"server 127.0.0.1:{upstream_port};")
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen_port};")
    site = site.replace("client_header_timeout 10s;", f"client_header_timeout {HEADER_TIMEOUT_S}s;")
    assert f"127.0.0.1:{upstream_port}" in site and f"127.0.0.1:{listen_port}" in site
    user = "user root;" if os.geteuid() == 0 else ""  # CI runs as root; nginx's workers would be nobody
    return f"""
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
{site}
}}
"""


@pytest.fixture(scope="module")
def proxy(tmp_path_factory) -> Iterator[str]:
    nginx = require_tool("nginx", "apt-get install nginx-light")
    server = start_served(max_connections="64")
    root = tmp_path_factory.mktemp("nginx")
    port = free_port()
    (root / "nginx.conf").write_text(nginx_conf(server.port, port, root))
    checked = subprocess.run(
        [nginx, "-t", "-p", str(root), "-c", str(root / "nginx.conf")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([nginx, "-p", str(root), "-c", str(root / "nginx.conf"), "-g", "daemon off;"])
    try:
        wait_until(lambda: _accepts(port), timeout_s=10)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.send_signal(signal.SIGQUIT)
        process.wait(10)
        stop_server(server)


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def test_a_photo_is_answered_through_the_proxy_with_the_scanner_s_request_id(proxy):
    with httpx.Client(base_url=proxy, timeout=30) as client:
        answer = client.post("/classify", files={"file": ("a.png", png(1))}, headers={"X-Request-ID": "line-3.17"})
        assert answer.status_code == 200, answer.text
        assert answer.headers["x-request-id"] == "line-3.17" and answer.json()["decision_id"]
        made = client.post("/classify", content=b"", headers={"Content-Type": "image/png"})
    assert made.status_code == 400 and re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert made.json()["request_id"] == made.headers["x-request-id"]  # nginx's id, carried by the service


def test_a_stalled_head_is_answered_408_by_the_proxy(proxy):
    port = int(proxy.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=HEADER_TIMEOUT_S + 10) as sock:
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Le")
        # nginx closes a connection whose head times out; it may say 408 first.
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            assert response.status == 408
        except http.client.RemoteDisconnected:
            pass
        assert sock.recv(1) == b""
