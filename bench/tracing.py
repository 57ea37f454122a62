"""What traces cost (`python -m bench tracing`, part of `make bench`).

The same single-image POST /classify load, with wrk at concurrency 64, against two servers: traces
off (no OTLP endpoint: nothing installed) and on (every request sampled, its server span and our six
spans exported over OTLP/HTTP to a receiver in this process, bench/otlp.py, which only counts what
it gets, so that it takes as little CPU from the server as it can). Throughput, p50 and p99, and the
server's CPU per request.
"""

from __future__ import annotations

import argparse
from typing import Any

from bench.load import measure, single_image_body, whole_s, wrk
from bench.otlp import Sink
from bench.server import running_server

TRACING_CONCURRENCY = 64


def bench_tracing(args: argparse.Namespace) -> dict[str, Any]:
    body, content_type = single_image_body()
    table: dict[str, Any] = {}
    for name in ("off", "on"):
        with Sink(keep=False) as sink:
            # Whatever this shell exports: off is no endpoint, on is this receiver and every request.
            env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": ""}
            if name == "on":
                env.update({"OTEL_EXPORTER_OTLP_ENDPOINT": sink.url, "OTEL_TRACES_SAMPLER": "always_on"})
            with running_server(env, nice=args.server_nice) as server:
                wrk(server.url + "/classify", body, content_type, TRACING_CONCURRENCY, whole_s(args.warmup_s))
                row = measure(server, body, content_type, TRACING_CONCURRENCY, args.duration_s)
            # Measured after the server stopped: its last spans were flushed at stop.
            row["exports"], row["exported_mib"] = sink.exports, sink.bytes / 2**20
        table[name] = row
        print(
            f"traces {name:>3} c={TRACING_CONCURRENCY} {row['requests_per_s']:8.0f} images/s"
            f"  p50 {row['p50_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  errors {row['errors']}"
            f"  OTLP exports {row['exports']} ({row['exported_mib']:.1f} MiB)",
            flush=True,
        )
    off, on = table["off"], table["on"]
    table["throughput_vs_off"] = on["requests_per_s"] / off["requests_per_s"]
    table["p50_added_ms"] = on["p50_ms"] - off["p50_ms"]
    table["p99_added_ms"] = on["p99_ms"] - off["p99_ms"]
    print(
        f"traces on: c={TRACING_CONCURRENCY} throughput {100 * table['throughput_vs_off']:.1f} % of off,"
        f" p50 {table['p50_added_ms']:+.2f} ms, p99 {table['p99_added_ms']:+.2f} ms",
        flush=True,
    )
    return table
