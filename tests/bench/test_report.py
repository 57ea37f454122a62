"""docs/benchmarks.md is rendered from the suite's figures; the committed figures still render."""

from __future__ import annotations

from pathlib import Path

from bench.report import headlines, load_results, report

REPO = Path(__file__).resolve().parents[2]


def committed_results() -> dict:
    return load_results(REPO / "docs" / "bench" / "results.json")


def test_the_committed_figures_render_every_section():
    text = report(committed_results(), "bench")
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Machine",
        "## Headline figures",
        "## POST /classify: throughput and latency versus concurrency",
        "## The raw model by batch size, and POST /classify/batch by request size",
        "## max_wait_ms sweep",
        "## Camera-size photos",
        "## What the decision log costs",
        "## Model roll-out",
        "## What traces cost",
        "## Soak",
        "## Reproduce",
    ]
    assert "python -m bench suite --soak-s 0" in text
    assert "- verdict: PASS" in text
    assert "| 2 MP (1600x1200) |" in text and "| 12 MP | 8 |" in text  # per stage, then over HTTP
    assert "| SQLite (embedded default) |" in text and "| PostgreSQL (local) |" in text


def test_headlines_compare_batched_with_the_null_model_and_unbatched():
    results = committed_results()
    lines = headlines(results)
    by_concurrency = {r["concurrency"]: r for r in results["concurrency"]["batched"]}
    null = {r["concurrency"]: r for r in results["concurrency"]["null-model"]}
    ratio = by_concurrency[64]["requests_per_s"] / null[64]["requests_per_s"]
    assert f"= {ratio:.2f}x the null-model ceiling" in lines[0]


def test_the_tracing_section_says_when_it_was_not_measured_and_renders_its_figures():
    results = committed_results()
    results.pop("tracing", None)
    assert "Not measured in this report (`python -m bench tracing`)." in report(results, "bench")

    def row(rate: float, p50: float, p99: float) -> dict:
        return {"requests_per_s": rate, "p50_ms": p50, "p99_ms": p99, "errors": 0, "server_cpu_ms_per_request": 0.5}

    results["tracing"] = {
        "date": "2026-01-02 03:04 UTC",
        "off": row(1000.0, 60.0, 80.0),
        "on": row(900.0, 66.0, 90.0),
        "throughput_vs_off": 0.9,
    }
    text = report(results, "bench")
    assert "| off | 1,000 |  | 60.00 ms | 80.00 ms | 0.500 ms | 0 |" in text
    assert "| on | 900 | 90.0 % | 66.00 ms | 90.00 ms | 0.500 ms | 0 |" in text


def test_the_camera_section_says_which_machine_it_was_measured_on():
    results = committed_results()
    results["camera"]["machine"] = {"cpu": "AMD EPYC", "logical CPUs": "2", "served in": "float32"}
    text = report(results, "bench")
    assert ", on AMD EPYC (2 logical CPUs), served in float32 (`python -m bench camera`" in text
    assert "| machine" not in text  # where it ran is no photo size
    results["camera"].pop("machine")
    assert "Measured " + results["camera"]["date"] + " (`python -m bench camera`" in report(results, "bench")
