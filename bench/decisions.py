"""What the decision log costs (`python -m bench decisions`, part of `make bench`).

The same single-image POST /classify load, with wrk, against three servers: the log off
(SORTER_DECISION_LOG=false), the embedded default (SQLite, WAL, synchronous=FULL) and a local
PostgreSQL (a throwaway cluster, fsync on). Throughput at concurrency 64, p50 at concurrency 1.
The goals (issue 15): with the log on, c=64 throughput at least 85 % of the log off, and c=1 p50 at
most 1 ms more.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from typing import Any

from bench import postgres
from bench.load import measure, single_image_body, whole_s, wrk
from bench.server import running_server

LOG_CONCURRENCY = (1, 64)


@contextlib.contextmanager
def _backend(name: str) -> Iterator[dict[str, str]]:
    if name == "off":
        yield {"SORTER_DECISION_LOG": "false"}
    elif name == "sqlite":
        yield {}
    else:
        with postgres.running_cluster() as cluster:
            yield {"SORTER_DATABASE_URL": cluster.url}


def backends() -> list[str]:
    return ["off", "sqlite", *(["postgresql"] if postgres.available() else [])]


def bench_decision_log(args: argparse.Namespace) -> dict[str, Any]:
    body, content_type = single_image_body()
    table: dict[str, dict[str, Any]] = {}
    for name in backends():
        with _backend(name) as env, running_server(env, nice=args.server_nice) as server:
            wrk(server.url + "/classify", body, content_type, max(LOG_CONCURRENCY), whole_s(args.warmup_s))
            rows: dict[str, Any] = {}
            for concurrency in LOG_CONCURRENCY:
                row = measure(server, body, content_type, concurrency, args.duration_s)
                rows[f"c{concurrency}"] = row
                print(
                    f"log {name:>10} c={concurrency:<3} {row['requests_per_s']:8.0f} images/s"
                    f"  p50 {row['p50_ms']:7.2f} ms"
                    f"  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}",
                    flush=True,
                )
            table[name] = rows
    off = table["off"]
    for name, rows in table.items():
        if name == "off":
            continue
        rows["throughput_vs_off"] = rows["c64"]["requests_per_s"] / off["c64"]["requests_per_s"]
        rows["p50_added_ms"] = rows["c1"]["p50_ms"] - off["c1"]["p50_ms"]
        print(
            f"log {name:>10}: c=64 throughput {100 * rows['throughput_vs_off']:.1f} % of off (goal >= 85 %),"
            f" c=1 p50 {rows['p50_added_ms']:+.2f} ms (goal <= +1 ms)",
            flush=True,
        )
    return table
