"""The provisioned Grafana dashboard: structure, the panels issue 5 asks for, and every query
checked as PromQL by promtool."""

from __future__ import annotations

import json

import pytest
import yaml
from deploy_helpers import DEPLOY, SERVICE_METRICS, load_yaml, metric_families, require_tool, run

GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "garment-sorter.json"
# Grafana's built-in variables, replaced by what Grafana would substitute at query time.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "3h"}


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def panels(dashboard) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries(panels: list[dict]) -> list[str]:
    return [target["expr"] for panel in panels for target in panel["targets"]]


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown Grafana variable in {expr}"
    return expr


def test_datasource_and_provider_are_provisioned(dashboard, panels):
    datasources = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert [(d["uid"], d["type"], d["isDefault"]) for d in datasources] == [("prometheus", "prometheus", True)]
    providers = load_yaml(GRAFANA / "provisioning" / "dashboards" / "garment-sorter.yml")["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [("file", "/var/lib/grafana/dashboards")]
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
    assert dashboard["uid"] == "garment-sorter"
    assert dashboard["templating"] == {"list": []}


def test_panels_issue_5_asks_for(panels):
    by_title = {panel["title"]: panel for panel in panels}
    exprs = {title: " ".join(t["expr"] for t in panel["targets"]) for title, panel in by_title.items()}

    rate = exprs["Request rate by route and status"]
    assert "rate(garment_sorter_requests_total[" in rate and "by (route, status)" in rate

    latency = by_title["Latency p50 / p99 by route"]
    assert [t["expr"].split(",")[0] for t in latency["targets"]] == [
        "histogram_quantile(0.5",
        "histogram_quantile(0.99",
    ]
    assert all("garment_sorter_request_duration_seconds_bucket" in t["expr"] for t in latency["targets"])
    assert latency["fieldConfig"]["defaults"]["unit"] == "s"

    assert "garment_sorter_queue_depth" in exprs["Queue depth"]

    batch = by_title["Batch-size distribution"]
    assert batch["type"] == "heatmap"
    assert batch["targets"][0]["format"] == "heatmap"
    assert "garment_sorter_batch_size_bucket" in batch["targets"][0]["expr"]

    assert "by (reason) (rate(garment_sorter_rejections_total[" in exprs["Rejections by reason"]
    assert "by (bin) (rate(garment_sorter_predictions_total[" in exprs["Predictions per bin"]
    assert "by (reason) (rate(garment_sorter_review_reasons_total[" in exprs["Review reasons"]


def test_every_query_is_valid_promql(tmp_path, panels):
    promtool = require_tool("promtool", "apt-get install prometheus (Debian; `make apt-deps` does it)")
    exprs = queries(panels)
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{i}", "expr": grafana_to_promql(expr)} for i, expr in enumerate(exprs)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump(rules))
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in result.stdout


def test_queries_read_only_service_metrics_and_recorded_rules(panels):
    recorded = {
        rule["record"]
        for group in load_yaml(DEPLOY / "prometheus" / "rules" / "garment-sorter.yml")["groups"]
        for rule in group["rules"]
        if "record" in rule
    }
    used = set()
    for expr in queries(panels):
        used |= metric_families(expr)
        for name in recorded:
            expr = expr.replace(name, "")
        assert "garment_sorter:" not in expr, f"unknown recording rule in {expr}"
    assert used == set(SERVICE_METRICS) | {"up"}, "every service metric on the dashboard, nothing else"


def test_layout_has_no_overlapping_panels(dashboard):
    cells = set()
    ids = set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps at {(x, y)}"
                cells.add((x, y))
