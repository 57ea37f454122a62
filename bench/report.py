"""docs/benchmarks.md and its plots (docs/bench/*.png) from the suite's figures."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.plan import CONCURRENCY, MAX_WAIT_CONCURRENCY, RAW_BATCH_SIZES, SOAK_P99_DRIFT_LIMIT, SOAK_RSS_GROWTH_LIMIT


# --- plots and the report -----------------------------------------------------------------------
def plot(results: dict[str, Any], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    styles = {"batched": "tab:blue", "unbatched": "tab:orange", "null-model": "tab:gray"}

    sweep = results["concurrency"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for build, rows in sweep.items():
        cs = [r["concurrency"] for r in rows]
        left.plot(cs, [r["requests_per_s"] for r in rows], "o-", color=styles[build], label=build)
        right.plot(cs, [r["p50_ms"] for r in rows], "o-", color=styles[build], label=f"{build} p50")
        right.plot(cs, [r["p99_ms"] for r in rows], "s--", color=styles[build], label=f"{build} p99")
    for axis in (left, right):
        axis.set_xscale("log", base=2)
        axis.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
        axis.set_xlabel("concurrent connections (wrk)")
        axis.grid(alpha=0.3)
    left.set_ylabel("images/s")
    left.set_title("POST /classify throughput")
    right.set_yscale("log")
    right.set_ylabel("latency (ms)")
    right.set_title("latency p50 / p99")
    left.legend()
    right.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out_dir / "concurrency.png", dpi=110)
    written.append("concurrency.png")
    plt.close(fig)

    fig, axis = plt.subplots(figsize=(6.5, 4))
    raw = results["raw_model"]
    axis.plot(list(raw), list(raw.values()), "o-", color="tab:green", label="raw model (SavedModel signature)")
    batch = results["batch_endpoint"]
    axis.plot(
        [r["files"] for r in batch],
        [r["images_per_s"] for r in batch],
        "s-",
        color="tab:purple",
        label="POST /classify/batch (one client)",
    )
    best = max(r["requests_per_s"] for r in sweep["batched"])
    axis.axhline(best, color="tab:blue", ls=":", label=f"POST /classify, best of sweep ({best:.0f}/s)")
    axis.set_xscale("log", base=2)
    axis.set_xticks(RAW_BATCH_SIZES, [str(b) for b in RAW_BATCH_SIZES])
    axis.set_yscale("log")
    axis.set_xlabel("batch size / files per request")
    axis.set_ylabel("images/s")
    axis.set_title("Raw model vs the batch endpoint")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "batch_sizes.png", dpi=110)
    written.append("batch_sizes.png")
    plt.close(fig)

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for concurrency, color in zip(MAX_WAIT_CONCURRENCY, ("tab:cyan", "tab:red"), strict=True):
        rows = [r for r in results["max_wait"] if r["concurrency"] == concurrency]
        waits = [r["max_wait_ms"] for r in rows]
        left.plot(waits, [r["requests_per_s"] for r in rows], "o-", color=color, label=f"c={concurrency}")
        right.plot(waits, [r["p50_ms"] for r in rows], "o-", color=color, label=f"c={concurrency} p50")
        right.plot(waits, [r["p99_ms"] for r in rows], "s--", color=color, label=f"c={concurrency} p99")
    left.set_ylabel("images/s")
    right.set_ylabel("latency (ms)")
    for axis in (left, right):
        axis.set_xlabel("SORTER_MAX_WAIT_MS")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    left.set_title("max_wait_ms sweep: throughput")
    right.set_title("max_wait_ms sweep: latency")
    fig.tight_layout()
    fig.savefig(out_dir / "max_wait.png", dpi=110)
    written.append("max_wait.png")
    plt.close(fig)

    if results.get("soak"):
        soak_result = results["soak"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        left.plot([t / 60 for t, _ in soak_result["rss"]], [r for _, r in soak_result["rss"]], color="tab:brown")
        left.set_xlabel("minutes")
        left.set_ylabel("server RSS (MiB)")
        left.set_title("Soak: memory")
        windows = soak_result["windows"]
        minutes = [w["start_s"] / 60 + 0.5 for w in windows]
        right.plot(minutes, [w["p50_ms"] for w in windows], "o-", label="p50")
        right.plot(minutes, [w["p99_ms"] for w in windows], "s-", label="p99")
        right.set_xlabel("minutes")
        right.set_ylabel("latency per minute (ms)")
        right.set_title(f"Soak: {soak_result['rate_per_s']:.0f} photos/s (half capacity)")
        for axis in (left, right):
            axis.grid(alpha=0.3)
        right.legend()
        fig.tight_layout()
        fig.savefig(out_dir / "soak.png", dpi=110)
        written.append("soak.png")
        plt.close(fig)
    return written


def load_results(path: Path) -> dict[str, Any]:
    """A results.json written by the suite, as the suite held it (JSON keys are text: batch sizes back to int)."""
    results: dict[str, Any] = json.loads(path.read_text())
    results["raw_model"] = {int(size): rate for size, rate in results["raw_model"].items()}
    return results


def _row(cells: Sequence[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def report(results: dict[str, Any], image_dir: str) -> str:
    """docs/benchmarks.md: one section per measurement, then how to reproduce it."""
    sections = [
        _introduction(results),
        _concurrency_section(results, image_dir),
        _batch_section(results, image_dir),
        _max_wait_section(results, image_dir),
        _camera_section(results),
        _decision_log_section(results),
        _rollout_section(results),
        _tracing_section(results),
        _soak_section(results, image_dir),
        _reproduce_section(image_dir),
    ]
    return "\n".join(line for section in sections for line in section)


def _introduction(results: dict[str, Any]) -> list[str]:
    return [
        "# Benchmarks",
        "",
        (
            f"Written by `make bench` (`python -m bench suite`) on {results['date']}, in {results['elapsed_min']:.0f}"
            f" minutes; model {results['model']}. Every server is a real `garment-sorter serve` on a loopback port,"
            " started fresh for its part; the load generators (wrk, or this package's open-loop client) run on the"
            " same machine, so they take CPU from the server: the figures are a floor."
        ),
        "",
        "## Machine",
        "",
        _row(["", ""]),
        _row(["---", "---"]),
        *[_row([k, v]) for k, v in results["machine"].items()],
        "",
        "## Headline figures",
        "",
        *[f"- {line}" for line in headlines(results)],
        "",
    ]


def _concurrency_section(results: dict[str, Any], image_dir: str) -> list[str]:
    sweep = {build: {r["concurrency"]: r for r in rows} for build, rows in results["concurrency"].items()}
    lines = [
        "## POST /classify: throughput and latency versus concurrency",
        "",
        (
            f"wrk, one 28x28 PNG (a test-set image) as multipart, {results['args']['duration_s']:g} s per point after a"
            f" {results['args']['warmup_s']:g} s warm-up. *batched*: default settings (max_batch_size 64,"
            " max_wait_ms 2); *unbatched*: SORTER_MAX_BATCH_SIZE=1; *null-model*: the same HTTP, multipart and"
            " decode path with no inference (SORTER_MODEL_BACKEND=null), the ceiling for this machine."
        ),
        "",
        f"![throughput and latency versus concurrency]({image_dir}/concurrency.png)",
        "",
        _row(["concurrency", *[f"{b} images/s" for b in sweep], *[f"{b} p50 / p99 ms" for b in sweep]]),
        _row(["---:"] * (1 + 2 * len(sweep))),
    ]
    for c in CONCURRENCY:
        lines.append(
            _row(
                [
                    c,
                    *[f"{sweep[b][c]['requests_per_s']:,.0f}" for b in sweep],
                    *[f"{sweep[b][c]['p50_ms']:.2f} / {sweep[b][c]['p99_ms']:.2f}" for b in sweep],
                ]
            )
        )
    errors = sum(r["errors"] for rows in results["concurrency"].values() for r in rows)
    return [*lines, "", f"Non-2xx answers or socket errors over the whole sweep: {errors}.", ""]


def _batch_section(results: dict[str, Any], image_dir: str) -> list[str]:
    lines = [
        "## The raw model by batch size, and POST /classify/batch by request size",
        "",
        (
            f"Raw: `python -m training bench-model` (the SavedModel's serving signature on test images, its own"
            f" process, {results['args']['raw_seconds']:g} s per size). Batch endpoint: one client posting the same"
            " request back to back (PNG test images), for the request sizes shown."
        ),
        "",
        f"![raw model and batch endpoint]({image_dir}/batch_sizes.png)",
        "",
        _row(
            [
                "size",
                "raw model images/s",
                "/classify/batch images/s",
                "/classify/batch p50 per request (ms)",
                "batch / raw",
            ]
        ),
        _row(["---:"] * 5),
    ]
    batch = {r["files"]: r for r in results["batch_endpoint"]}
    for size in RAW_BATCH_SIZES:
        raw = results["raw_model"][size]
        lines.append(
            _row(
                [
                    size,
                    f"{raw:,.0f}",
                    f"{batch[size]['images_per_s']:,.0f}",
                    f"{batch[size]['p50_ms']:.1f}",
                    f"{batch[size]['images_per_s'] / raw:.0%}",
                ]
            )
        )
    return [*lines, ""]


def _max_wait_section(results: dict[str, Any], image_dir: str) -> list[str]:
    return [
        "## max_wait_ms sweep",
        "",
        (
            "How long the batcher may wait to fill a batch (it waits only while more requests are known to be"
            " on their way). Same request as above."
        ),
        "",
        f"![max_wait_ms sweep]({image_dir}/max_wait.png)",
        "",
        _row(["max_wait_ms", "concurrency", "images/s", "p50 ms", "p99 ms"]),
        _row(["---:"] * 5),
        *[
            _row(
                [
                    r["max_wait_ms"],
                    r["concurrency"],
                    f"{r['requests_per_s']:,.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                ]
            )
            for r in results["max_wait"]
        ],
        "",
    ]


def _not_measured(title: str, part: str) -> list[str]:
    """A part's section when the report holds none of its figures: the heading and how to get them."""
    return [title, "", f"Not measured in this report (`python -m bench {part}`).", ""]


def _camera_section(results: dict[str, Any]) -> list[str]:
    camera = results.get("camera")
    if not camera:
        return _not_measured("## Camera-size photos", "camera")
    sizes = {name: figures for name, figures in camera.items() if isinstance(figures, dict) and "http" in figures}
    lines = [
        "## Camera-size photos",
        "",
        (
            f"Measured {camera['date']}{_measured_on(camera)} (`python -m bench camera`; bench/camera.py). Scanner"
            " photos of test garments on every kind of belt, brought to camera size with sensor noise and saved as"
            " quality-90 JPEGs. Per stage: CPU milliseconds in one thread, the median over 20 photos."
            " Over HTTP: one JPEG per POST /classify (multipart), wrk, the photo of median cost; the server's CPU"
            " per photo counts every thread of the server process."
        ),
        "",
        _row(["photo", "JPEG", "decode", "segmentation", "recipe", "inference (batch 1)", "total"]),
        _row(["---", "---:", "---:", "---:", "---:", "---:", "---:"]),
    ]
    for name, figures in sizes.items():
        ms = figures["ms"]
        width, height = figures["size"]
        lines.append(
            _row(
                [
                    f"{name} ({width}x{height})",
                    f"{figures['jpeg_kb']:.0f} KB",
                    *(f"{ms[stage]:.2f} ms" for stage in ("decode", "segmentation", "recipe", "inference", "total")),
                ]
            )
        )
    lines += [
        "",
        _row(["photo", "concurrency", "photos/s", "p50", "p99", "server CPU per photo", "errors"]),
        _row(["---", *["---:"] * 6]),
    ]
    for name, figures in sizes.items():
        for row in figures["http"]:
            cpu_ms = row.get("server_cpu_ms_per_request")
            lines.append(
                _row(
                    [
                        name,
                        row["concurrency"],
                        f"{row['requests_per_s']:.0f}",
                        f"{row['p50_ms']:.2f} ms",
                        f"{row['p99_ms']:.2f} ms",
                        "-" if cpu_ms is None else f"{cpu_ms:.1f} ms",
                        row["errors"],
                    ]
                )
            )
    return [*lines, ""]


def _measured_on(part: dict[str, Any]) -> str:
    """What follows the date: where the part recorded its machine, its CPU, core count and precision."""
    where = part.get("machine")
    if not where:
        return ""
    return f", on {where['cpu']} ({where['logical CPUs']} logical CPUs), served in {where['served in']}"


LOG_NAMES = {"off": "log off", "sqlite": "SQLite (embedded default)", "postgresql": "PostgreSQL (local)"}


def _decision_log_section(results: dict[str, Any]) -> list[str]:
    log = results.get("decision_log")
    title = "## What the decision log costs"
    if not log:
        return _not_measured(title, "decisions")
    lines = [
        title,
        "",
        (
            f"Measured {log['date']} (`python -m bench decisions`; bench/decisions.py). Single-image POST"
            " /classify (multipart PNG) with wrk against three servers: the log off, SQLite (WAL,"
            " synchronous=FULL) and a local PostgreSQL (fsync on). Every 200 is a committed decision."
            " Goals: c=64 throughput >= 85 % of the log off; c=1 p50 at most +1 ms."
        ),
        "",
        _row(["decision log", "c=64 images/s", "vs off", "c=64 p99", "c=1 p50", "vs off", "c=1 p99", "errors"]),
        _row(["---", *["---:"] * 7]),
    ]
    for name, rows in log.items():
        if not isinstance(rows, dict):
            continue
        c1, c64 = rows["c1"], rows["c64"]
        lines.append(
            _row(
                [
                    LOG_NAMES.get(name, name),
                    f"{c64['requests_per_s']:,.0f}",
                    f"{100 * rows['throughput_vs_off']:.1f} %" if "throughput_vs_off" in rows else "",
                    f"{c64['p99_ms']:.2f} ms",
                    f"{c1['p50_ms']:.2f} ms",
                    f"{rows['p50_added_ms']:+.2f} ms" if "p50_added_ms" in rows else "",
                    f"{c1['p99_ms']:.2f} ms",
                    c1["errors"] + c64["errors"],
                ]
            )
        )
    return [*lines, ""]


def _rollout_section(results: dict[str, Any]) -> list[str]:
    rollout = results.get("rollout")
    title = "## Model roll-out"
    if not rollout:
        return _not_measured(title, "rollout")
    swap, shadow = rollout["swap"], rollout["shadow"]
    steady, during = swap["steady"], swap["during_swap"]
    return [
        title,
        "",
        (
            f"Measured {rollout['date']} (`python -m bench rollout`; bench/rollout.py). Single-image POST"
            " /classify with wrk. A swap: at concurrency 64, an admin request promotes version"
            f" {rollout.get('candidate', 7)} (loaded and warmed beside the live version {rollout.get('served', 9)},"
            " then swapped between two batches) 3 s into the run. Goals:"
            " no non-2xx answer, p99 at most 2x steady; with a shadow, p50 at concurrency 1 within +10 %."
        ),
        "",
        _row(["run", "images/s", "p50", "p99", "non-2xx or errors"]),
        _row(["---", "---:", "---:", "---:", "---:"]),
        _row(
            [
                "c=64 steady",
                f"{steady['requests_per_s']:,.0f}",
                f"{steady['p50_ms']:.2f} ms",
                f"{steady['p99_ms']:.2f} ms",
                steady["errors"],
            ]
        ),
        _row(
            [
                "c=64 during the swap",
                f"{during['requests_per_s']:,.0f}",
                f"{during['p50_ms']:.2f} ms",
                f"{during['p99_ms']:.2f} ms",
                during["errors"],
            ]
        ),
        _row(
            [
                "c=1 shadow off",
                f"{shadow['off_c1']['requests_per_s']:,.0f}",
                f"{shadow['off_c1']['p50_ms']:.2f} ms",
                f"{shadow['off_c1']['p99_ms']:.2f} ms",
                shadow["off_c1"]["errors"],
            ]
        ),
        _row(
            [
                "c=1 shadow on",
                f"{shadow['on_c1']['requests_per_s']:,.0f}",
                f"{shadow['on_c1']['p50_ms']:.2f} ms",
                f"{shadow['on_c1']['p99_ms']:.2f} ms",
                shadow["on_c1"]["errors"],
            ]
        ),
        _row(
            [
                "c=64 shadow on",
                f"{shadow['on_c64']['requests_per_s']:,.0f}",
                f"{shadow['on_c64']['p50_ms']:.2f} ms",
                f"{shadow['on_c64']['p99_ms']:.2f} ms",
                shadow["on_c64"]["errors"],
            ]
        ),
        "",
        (
            f"p99 during the swap: {swap['p99_ratio']:.2f}x steady (load, warm-up and swap took"
            f" {swap['load_and_warm_s']:.1f} s); resident memory {swap.get('rss_one_version_mib', 0):.0f} MiB with one"
            f" version loaded, {swap.get('rss_two_versions_mib', 0):.0f} MiB with two."
            " Shadow (it runs only when no live request has been in flight"
            f" for 3 ms): c=1 closed loop p50 {100 * shadow['p50_change']:+.1f} % with"
            f" {100 * shadow['c1_shadowed_share']:.0f} % of answers shadowed; at a scanner line's"
            f" {shadow.get('line_rate_per_s', 0):g} photos/s, p50 {shadow.get('line_off_p50_ms', 0):.2f} ->"
            f" {shadow.get('line_on_p50_ms', 0):.2f} ms ({100 * shadow.get('line_p50_change', 0):+.1f} %) with"
            f" {100 * shadow.get('line_shadowed_share', 0):.0f} % shadowed; at c=64,"
            f" {100 * shadow['c64_dropped_share']:.0f} % of copies dropped."
        ),
        "",
    ]


def _tracing_section(results: dict[str, Any]) -> list[str]:
    traces = results.get("tracing")
    title = "## What traces cost"
    if not traces:
        return _not_measured(title, "tracing")
    lines = [
        title,
        "",
        (
            f"Measured {traces['date']} (`python -m bench tracing`; bench/tracing.py). Single-image POST"
            " /classify (multipart PNG) with wrk at concurrency 64 against two servers: traces off (no OTLP"
            " endpoint: nothing installed) and on (every request sampled; its server span and six spans"
            " exported over OTLP/HTTP to a receiver on the same machine that only counts them)."
            " See [observability.md](observability.md)."
        ),
        "",
        _row(["traces", "c=64 images/s", "vs off", "p50", "p99", "server CPU per request", "errors"]),
        _row(["---", *["---:"] * 6]),
    ]
    for name in ("off", "on"):
        row = traces[name]
        cpu = row.get("server_cpu_ms_per_request")
        lines.append(
            _row(
                [
                    name,
                    f"{row['requests_per_s']:,.0f}",
                    f"{100 * traces['throughput_vs_off']:.1f} %" if name == "on" else "",
                    f"{row['p50_ms']:.2f} ms",
                    f"{row['p99_ms']:.2f} ms",
                    "" if cpu is None else f"{cpu:.3f} ms",
                    row["errors"],
                ]
            )
        )
    return [*lines, ""]


def _soak_section(results: dict[str, Any], image_dir: str) -> list[str]:
    soak_result = results.get("soak")
    if not soak_result:
        return ["## Soak", "", "Not run this time (`--soak-s 0`)."]
    return [
        "## Soak",
        "",
        (
            f"{soak_result['duration_s'] / 60:.0f} minutes at {soak_result['rate_per_s']:.0f} catalog photos/s"
            f" (half of the {soak_result['capacity_per_s']:.0f}/s measured with 32 connections), open loop,"
            " 200 different photos (JPEG, a few hundred pixels) in turn. Growth and drift are measured from the"
            " end of the first minute (warm-up)."
        ),
        "",
        f"![soak]({image_dir}/soak.png)",
        "",
        (
            f"- sent {soak_result['sent']:,}; answers {soak_result['statuses']}; transport failures"
            f" {soak_result['failures']}; sends behind schedule {soak_result['late_sends']}"
        ),
        (
            f"- RSS {soak_result['rss_start_mib']:.0f} MiB at start, {soak_result['rss_baseline_mib']:.0f} MiB after"
            f" the first minute, {soak_result['rss_end_mib']:.0f} MiB at the end: growth"
            f" {100 * soak_result['rss_growth']:+.2f} % (limit {100 * SOAK_RSS_GROWTH_LIMIT:.0f} %)"
        ),
        (
            f"- p99 per minute: {soak_result['p99_first_ms']:.1f} ms in minute 2, {soak_result['p99_last_ms']:.1f} ms"
            f" in the last (ratio {soak_result['p99_drift']:.2f}, limit {SOAK_P99_DRIFT_LIMIT}); median"
            f" {soak_result['p99_median_ms']:.1f} ms, worst {soak_result['p99_max_ms']:.1f} ms"
        ),
        f"- verdict: {'PASS' if soak_result['passed'] else 'FAIL'}",
        "",
        _row(["minute", "answered", "p50 ms", "p99 ms", "RSS MiB"]),
        _row(["---:"] * 5),
        *[
            _row(
                [
                    int(w["start_s"] // 60) + 1,
                    w["answered"],
                    f"{w['p50_ms']:.1f}",
                    f"{w['p99_ms']:.1f}",
                    f"{w['rss_mib']:.0f}",
                ]
            )
            for w in soak_result["windows"]
        ],
    ]


def _reproduce_section(image_dir: str) -> list[str]:
    return [
        "",
        "## Reproduce",
        "",
        "```bash",
        "make bench                              # everything above, about 25 minutes",
        "python -m bench suite --soak-s 0        # without the 10-minute soak",
        "python -m bench soak                    # the soak alone (prints its figures)",
        "```",
        "",
        f"Raw figures: [`{image_dir}/results.json`]({image_dir}/results.json).",
        "",
    ]


def headlines(results: dict[str, Any]) -> list[str]:
    sweep = {build: {r["concurrency"]: r for r in rows} for build, rows in results["concurrency"].items()}
    best_c = max(CONCURRENCY, key=lambda c: sweep["batched"][c]["requests_per_s"])
    b, u, n = sweep["batched"], sweep["unbatched"], sweep["null-model"]
    raw_256 = results["raw_model"][256]
    batch_256 = next(r for r in results["batch_endpoint"] if r["files"] == 256)
    lines = [
        (
            f"single-image POST /classify, batching on: {b[best_c]['requests_per_s']:,.0f} images/s at c={best_c}"
            f" (p50 {b[best_c]['p50_ms']:.1f} ms, p99 {b[best_c]['p99_ms']:.1f} ms);"
            f" at c=64 {b[64]['requests_per_s']:,.0f} images/s"
            f" = {b[64]['requests_per_s'] / n[64]['requests_per_s']:.2f}x the null-model ceiling and"
            f" {b[64]['requests_per_s'] / u[64]['requests_per_s']:.2f}x unbatched"
        ),
        (
            f"latency at c=1: p50 {b[1]['p50_ms']:.2f} ms batched vs {u[1]['p50_ms']:.2f} ms unbatched"
            f" ({b[1]['p50_ms'] - u[1]['p50_ms']:+.2f} ms)"
        ),
        (
            f"raw model: {results['raw_model'][1]:,.0f} images/s at batch 1, {raw_256:,.0f} at batch 256;"
            f" POST /classify/batch with 256 images: {batch_256['images_per_s']:,.0f} images/s"
            f" ({batch_256['images_per_s'] / raw_256:.0%} of raw)"
        ),
    ]
    best_wait = max((r for r in results["max_wait"] if r["concurrency"] == 64), key=lambda r: r["requests_per_s"])
    lines.append(
        f"max_wait_ms: best throughput at c=64 with {best_wait['max_wait_ms']} ms"
        f" ({best_wait['requests_per_s']:,.0f} images/s)"
    )
    if results.get("soak"):
        s = results["soak"]
        lines.append(
            f"soak, {s['duration_s'] / 60:g} min at {s['rate_per_s']:.0f} photos/s:"
            f" RSS {100 * s['rss_growth']:+.2f} %, p99 {s['p99_first_ms']:.0f} -> {s['p99_last_ms']:.0f} ms,"
            f" {'PASS' if s['passed'] else 'FAIL'}"
        )
    return lines
