"""deploy/compose.yaml (+ compose.gpu.yaml, compose.proxy.yaml): schema, services, ports, mounts, healthchecks, and
consistency with the Prometheus, Grafana and image configuration it wires together."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
from deploy_helpers import DEPLOY, REPO, duration_s, load_yaml, project_version, sorter_env_fields

COMPOSE = DEPLOY / "compose.yaml"
COMPOSE_GPU = DEPLOY / "compose.gpu.yaml"
COMPOSE_PROXY = DEPLOY / "compose.proxy.yaml"
# The Compose Specification's JSON schema (see schemas/README.md).
SCHEMA = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())


def merged(base: dict, override: dict) -> dict:
    """Compose's merge of -f files for mappings (what the GPU override uses)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def schema_errors(document: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(SCHEMA)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_compose_files_match_the_compose_schema(compose):
    gpu = load_yaml(COMPOSE_GPU)
    assert schema_errors(compose) == []
    assert schema_errors(gpu) == []
    assert schema_errors(merged(compose, gpu)) == []
    assert schema_errors(merged(compose, load_yaml(COMPOSE_PROXY))) == []


def test_the_proxy_mounts_the_nginx_config_and_reaches_the_api_by_its_service_name(compose):
    proxy = load_yaml(COMPOSE_PROXY)["services"]["proxy"]
    source, target, mode = proxy["volumes"][0].split(":")
    assert (DEPLOY / source).is_file() and (target, mode) == ("/etc/nginx/conf.d/default.conf", "ro")
    assert "server api:8000;" in (DEPLOY / source).read_text() and "api" in compose["services"]
    assert proxy["depends_on"] == {"api": {"condition": "service_healthy"}}


def test_schema_check_rejects_mistakes(compose):
    broken = copy.deepcopy(compose)
    broken["services"]["api"]["helthcheck"] = broken["services"]["api"].pop("healthcheck")
    broken["services"]["grafana"]["ports"] = "3000:3000"
    errors = schema_errors(broken)
    assert any("helthcheck" in e for e in errors), errors
    assert any(e.startswith("services/grafana/ports") for e in errors), errors


def test_services_and_published_ports(services):
    assert set(services) == {"api", "prometheus", "grafana", "jaeger"}
    assert services["api"]["ports"] == ["8000:8000"]
    # Prometheus and Jaeger's UI have no authentication: published on the host's loopback only.
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    assert services["grafana"]["ports"] == ["3000:3000"]
    assert services["jaeger"]["ports"] == ["127.0.0.1:16686:16686"]


def test_the_trace_backend_is_optional_and_off_by_default(services):
    # The default stack is what it was; Jaeger comes only with the tracing profile.
    assert {name: service.get("profiles") for name, service in services.items()} == {
        "api": None,
        "prometheus": None,
        "grafana": None,
        "jaeger": ["tracing"],
    }
    assert not any("jaeger" in str(service.get("depends_on", {})) for service in services.values())
    # Empty unless the operator sets it: no traces, nothing of OpenTelemetry installed.
    assert services["api"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://jaeger:4318" in COMPOSE.read_text()  # how to turn it on


def test_api_is_built_from_the_repository_dockerfile(services):
    api = services["api"]
    context = (DEPLOY / api["build"]["context"]).resolve()
    assert context == REPO
    assert (context / api["build"]["dockerfile"]).is_file()
    assert api["image"] == f"garment-sorter:{project_version()}"
    assert "deploy" not in api  # the GPU reservation lives in compose.gpu.yaml only


def test_images_are_pinned(services):
    for name, service in services.items():
        image = service["image"]
        assert re.fullmatch(r"[a-z0-9./-]+:v?\d+\.\d+\.\d+", image), f"{name}: unpinned image {image}"


def test_every_mounted_file_exists_and_named_volumes_are_declared(compose, services):
    declared = set(compose.get("volumes", {}))
    used_named = set()
    binds = 0
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target, *mode = volume.split(":")
            assert target.startswith("/"), f"{name}: {volume}"
            if source.startswith((".", "/")):
                binds += 1
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
                # Configuration and models are mounted read-only.
                assert mode == ["ro"], f"{name}: bind mount {volume} is writable"
            else:
                used_named.add(source)
    assert binds == 5
    assert used_named == declared == {"sorter-data", "prometheus-data", "grafana-data"}


def mount_source(service: dict, target: str) -> Path:
    for volume in service["volumes"]:
        source, mounted_at, *_ = volume.split(":")
        if mounted_at == target:
            return (DEPLOY / source).resolve()
    raise AssertionError(f"nothing is mounted at {target}")


def container_path(service: dict, path: str) -> Path:
    """Where a path inside the container comes from on the host, through the bind mounts."""
    for volume in service["volumes"]:
        source, target, *_ = volume.split(":")
        if path == target or path.startswith(target + "/"):
            return (DEPLOY / source).resolve() / path[len(target) :].lstrip("/")
    raise AssertionError(f"{path} is not under any mount")


def test_prometheus_reads_the_mounted_config_and_scrapes_the_api(services):
    prometheus = services["prometheus"]
    flags = dict(arg.split("=", 1) for arg in prometheus["command"] if "=" in arg)
    config_path = container_path(prometheus, flags["--config.file"])
    assert config_path == (DEPLOY / "prometheus" / "prometheus.yml").resolve()
    config = load_yaml(config_path)
    # rule_files are relative to the config file: the rules must be mounted beside it.
    for pattern in config["rule_files"]:
        in_container = str(Path(flags["--config.file"]).parent / pattern)
        host_pattern = container_path(prometheus, in_container)
        assert list(host_pattern.parent.glob(host_pattern.name)), f"{pattern} matches no mounted file"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api_targets = [t for group in jobs["garment-sorter"]["static_configs"] for t in group["targets"]]
    api_port = services["api"]["ports"][0].split(":")[-1]
    assert api_targets == [f"api:{api_port}"]
    assert jobs["garment-sorter"]["metrics_path"] == "/metrics"
    assert flags["--storage.tsdb.path"] == "/prometheus"
    assert "prometheus-data:/prometheus" in prometheus["volumes"]


def test_grafana_is_provisioned_from_the_mounted_files(services):
    grafana = services["grafana"]
    provisioning = mount_source(grafana, "/etc/grafana/provisioning")
    datasources = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert [d["url"] for d in datasources] == ["http://prometheus:9090"]
    prometheus_port = services["prometheus"]["ports"][0].split(":")[-1]
    assert prometheus_port == "9090"

    providers = load_yaml(provisioning / "dashboards" / "garment-sorter.yml")["providers"]
    dashboards_dir = container_path(grafana, providers[0]["options"]["path"])
    assert sorted(p.name for p in dashboards_dir.glob("*.json")) == ["garment-sorter.json"]
    # The admin password comes from the operator's environment, not from this file.
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:-admin}"
    assert container_path(grafana, grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]).is_file()


def test_every_service_has_a_healthcheck(services):
    expected_urls = {
        "api": "http://127.0.0.1:8000/readyz",
        "prometheus": "http://127.0.0.1:9090/-/ready",
        "grafana": "http://127.0.0.1:3000/api/health",
        "jaeger": "http://127.0.0.1:16686/",
    }
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] == "CMD", f"{name}: exec form, no shell needed"
        assert any(expected_urls[name] in part for part in check["test"]), (name, check["test"])
        assert duration_s(check["timeout"]) < duration_s(check["interval"])
        assert check["retries"] >= 3
        assert duration_s(check["start_period"]) >= 30


def test_start_order_waits_for_health(services):
    assert services["prometheus"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert services["grafana"]["depends_on"] == {"prometheus": {"condition": "service_healthy"}}


def test_stop_grace_period_outlasts_the_drain(services):
    api = services["api"]
    drain_s = float(api["environment"]["SORTER_DRAIN_TIMEOUT_S"])
    assert drain_s == 30
    assert duration_s(api["stop_grace_period"]) >= drain_s + 5


def test_api_environment_names_real_settings(services):
    # Besides our settings, only the OpenTelemetry SDK's standard variables (app/tracing.py).
    names = {name for name in services["api"]["environment"] if not name.startswith("OTEL_")}
    assert names <= sorter_env_fields(), names - sorter_env_fields()


def test_models_volume_replaces_the_baked_in_models(services):
    api = services["api"]
    source = mount_source(api, "/srv/garment-sorter/models")
    assert source == (REPO / "models").resolve()
    assert api["environment"]["SORTER_MODEL_DIR"] == "/srv/garment-sorter/models/fashion-cnn"


def test_gpu_override_reserves_an_nvidia_gpu():
    gpu = load_yaml(COMPOSE_GPU)
    assert set(gpu["services"]) == {"api"}
    devices = gpu["services"]["api"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
