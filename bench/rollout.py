"""What a model roll-out costs (`python -m bench rollout`, part of `make bench`).

- **A swap under load**: single-image POST /classify at concurrency 64 with wrk; during the run an
  admin request promotes another version (loaded and warmed in the background while the live one
  serves, then swapped between two batches). Against a steady run of the same length: non-2xx
  answers and p99. Goal: none, and p99 at most 2x steady.
- **Shadow**: p50 with a shadow candidate and without (goal: within +10 %) at concurrency 1 (closed
  loop: the next request follows each answer at once) and at a scanner line's pace (open loop,
  LINE_RATE photos/s), with the share of answers the candidate saw; at concurrency 64 the share of
  copies dropped because live work came first.

The candidate is the held-out twin (the lower of the two versions in the tree: other networks
than the served one's).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench.load import http_request, measure, open_loop, single_image_body, whole_s, wrk
from bench.server import REPO, rss_bytes, running_server
from contract.versions import versions

MODELS = REPO / "models" / "fashion-cnn"
CANDIDATE, SERVED = versions(MODELS)[0], versions(MODELS)[-1]
SWAP_AFTER_S = 3.0
LINE_RATE_PER_S = 20.0  # a busy scanner line: a photo every 50 ms


def _admin(url: str, method: str = "POST", body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=300) as response:
        return int(response.status)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


def _shadow_counts(text: str) -> tuple[float, float]:
    answered = dropped = 0.0
    for line in text.splitlines():
        if line.startswith("garment_sorter_shadow_answers_total{"):
            answered += float(line.rsplit(" ", 1)[1])
        elif line.startswith("garment_sorter_shadow_dropped_total{"):
            dropped += float(line.rsplit(" ", 1)[1])
    return answered, dropped


def _line(port: int, body: bytes, content_type: str, duration_s: float) -> float:
    """p50 in ms of single-image requests sent at LINE_RATE_PER_S (open loop)."""
    raw = http_request("POST", "/classify", body, {"Content-Type": content_type}, port)
    result = asyncio.run(open_loop(port, raw, LINE_RATE_PER_S, duration_s, max_connections=16, timeout_s=30))
    return 1000 * statistics.median(result.latencies_s[200])


def bench_rollout(args: argparse.Namespace) -> dict[str, Any]:
    body, content_type = single_image_body()
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        root = Path(tmp) / "models"
        root.mkdir()
        shutil.copytree(MODELS / str(SERVED), root / str(SERVED))
        shutil.copytree(MODELS / str(CANDIDATE), root / str(CANDIDATE))  # below the live: not promoted by itself
        # No keys: wrk sends none, and without keys the admin routes are open too.
        env = {"SORTER_MODEL_DIR": str(root), "SORTER_MODEL_POLL_S": "0"}
        results: dict[str, Any] = {"served": SERVED, "candidate": CANDIDATE}
        with running_server(env, nice=args.server_nice) as server:
            url = server.url + "/classify"
            wrk(url, body, content_type, 64, whole_s(args.warmup_s))
            steady = measure(server, body, content_type, 64, args.duration_s)
            rss_one = rss_bytes(server.process.pid)
            swap_result: dict[str, Any] = {}

            def swap() -> None:
                time.sleep(SWAP_AFTER_S)
                started = time.perf_counter()
                swap_result["status"] = _admin(f"{server.url}/v1/admin/models/{CANDIDATE}/promote")
                swap_result["swap_s"] = time.perf_counter() - started

            swapper = threading.Thread(target=swap)
            swapper.start()
            during = measure(server, body, content_type, 64, args.duration_s)
            swapper.join()
            rss_two = rss_bytes(server.process.pid)  # the new live and the previous, both resident
            results["swap"] = {
                "rss_one_version_mib": rss_one / 2**20,
                "rss_two_versions_mib": rss_two / 2**20,
                "steady": steady,
                "during_swap": during,
                "p99_ratio": during["p99_ms"] / steady["p99_ms"],
                "load_and_warm_s": swap_result.get("swap_s"),
                "admin_status": swap_result.get("status"),
            }
            print(
                f"swap under c=64: steady p99 {steady['p99_ms']:.1f} ms, during the swap p99 {during['p99_ms']:.1f} ms"
                f" ({results['swap']['p99_ratio']:.2f}x; goal <= 2x), non-2xx {during['errors']},"
                f" load+warm+swap {swap_result.get('swap_s', float('nan')):.1f} s;"
                f" RSS {rss_one / 2**20:.0f} MiB with one version, {rss_two / 2**20:.0f} MiB with two",
                flush=True,
            )
            _admin(f"{server.url}/v1/admin/rollback")
            off = measure(server, body, content_type, 1, args.duration_s)
            line_off_ms = _line(server.port, body, content_type, args.duration_s)
            _admin(
                f"{server.url}/v1/admin/shadow", "PUT", f'{{"version": {CANDIDATE}}}'.encode()
            )  # the candidate in shadow of the served version
            on = measure(server, body, content_type, 1, args.duration_s)
            answered_1, dropped_1 = _shadow_counts(_scrape(server.url))
            time.sleep(3.0)  # copies still waiting go stale
            line_on_ms = _line(server.port, body, content_type, args.duration_s)
            time.sleep(3.0)
            answered_line, dropped_line = _shadow_counts(_scrape(server.url))
            answered_line, dropped_line = answered_line - answered_1, dropped_line - dropped_1
            answered_1, dropped_1 = answered_1 + answered_line, dropped_1 + dropped_line
            loaded = measure(server, body, content_type, 64, args.duration_s)
            answered_64, dropped_64 = _shadow_counts(_scrape(server.url))
            answered_64, dropped_64 = answered_64 - answered_1, dropped_64 - dropped_1
            results["shadow"] = {
                "off_c1": off,
                "on_c1": on,
                "p50_change": on["p50_ms"] / off["p50_ms"] - 1,
                "c1_shadowed_share": (answered_1 - answered_line)
                / max(1.0, answered_1 - answered_line + dropped_1 - dropped_line),
                "line_rate_per_s": LINE_RATE_PER_S,
                "line_off_p50_ms": line_off_ms,
                "line_on_p50_ms": line_on_ms,
                "line_p50_change": line_on_ms / line_off_ms - 1,
                "line_shadowed_share": answered_line / max(1.0, answered_line + dropped_line),
                "on_c64": loaded,
                "c64_dropped_share": dropped_64 / max(1.0, answered_64 + dropped_64),
            }
            print(
                f"shadow at c=1: p50 {off['p50_ms']:.2f} -> {on['p50_ms']:.2f} ms"
                f" ({100 * results['shadow']['p50_change']:+.1f} %; goal <= +10 %),"
                f" {100 * results['shadow']['c1_shadowed_share']:.0f} % of answers shadowed;"
                f" at {LINE_RATE_PER_S:g} photos/s p50 {line_off_ms:.2f} -> {line_on_ms:.2f} ms"
                f" ({100 * results['shadow']['line_p50_change']:+.1f} %),"
                f" {100 * results['shadow']['line_shadowed_share']:.0f} % shadowed;"
                f" at c=64 {loaded['requests_per_s']:.0f}/s with {100 * results['shadow']['c64_dropped_share']:.0f} %"
                " of copies dropped",
                flush=True,
            )
    return results
