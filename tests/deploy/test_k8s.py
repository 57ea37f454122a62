"""Kubernetes manifests: kubernetes-validate --strict against a pinned Kubernetes release, the GPU
variant rendered the way kustomize applies its patch, and the cross-references (probes, ports,
selectors, drain timing, monitoring) that a schema cannot check."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from deploy_helpers import (
    DEPLOY,
    KUBERNETES_VERSION,
    REPO,
    RULES_FILE,
    load_yaml,
    load_yaml_all,
    project_version,
    require_tool,
    run,
    sorter_env_fields,
)

K8S = DEPLOY / "k8s"
BASE = K8S / "base"


def kustomization(directory) -> dict:
    return load_yaml(directory / "kustomization.yaml")


def base_resources() -> dict[str, dict]:
    docs = {}
    for name in kustomization(BASE)["resources"]:
        for doc in load_yaml_all(BASE / name):
            docs[doc["kind"]] = doc
    return docs


def strategic_merge(base, patch, path=""):
    """Kubernetes' strategic merge for what our patches use: maps merge, containers merge by name,
    other lists are replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = strategic_merge(base[key], value, f"{path}.{key}") if key in base else copy.deepcopy(value)
        return out
    if isinstance(base, list) and path.endswith(".containers"):
        out = copy.deepcopy(base)
        by_name = {c["name"]: i for i, c in enumerate(out)}
        for item in patch:
            assert item["name"] in by_name, f"patch adds an unknown container {item['name']}"
            out[by_name[item["name"]]] = strategic_merge(out[by_name[item["name"]]], item, path)
        return out
    return copy.deepcopy(patch)


def render_gpu() -> dict[str, dict]:
    overlay = K8S / "gpu"
    config = kustomization(overlay)
    assert config["resources"] == ["../base"]
    docs = base_resources()
    for entry in config["patches"]:
        patch = load_yaml(overlay / entry["path"])
        target = docs[patch["kind"]]
        assert patch["metadata"]["name"] == target["metadata"]["name"]
        docs[patch["kind"]] = strategic_merge(target, patch)
    return docs


def kubernetes_validate(paths) -> tuple[int, str]:
    exe = require_tool("kubernetes-validate", "pip install kubernetes-validate (part of the dev extra)")
    result = run([exe, "--strict", "--kubernetes-version", KUBERNETES_VERSION, *map(str, paths)])
    return result.returncode, result.stdout + result.stderr


@pytest.fixture(scope="module")
def base() -> dict[str, dict]:
    return base_resources()


@pytest.fixture(scope="module")
def container(base) -> dict:
    (only,) = base["Deployment"]["spec"]["template"]["spec"]["containers"]
    return only


def env_of(container: dict) -> dict[str, str]:
    """Plain values; a variable from a Secret shows as secret:<name>/<key>."""
    env = {}
    for item in container["env"]:
        if "value" in item:
            env[item["name"]] = item["value"]
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = f"secret:{ref['name']}/{ref['key']}"
    return env


def test_kustomizations_list_exactly_the_files_present():
    base = kustomization(BASE)
    assert sorted(base["resources"]) == sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    gpu = kustomization(K8S / "gpu")
    assert sorted(p["path"] for p in gpu["patches"]) == sorted(
        p.name for p in (K8S / "gpu").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    monitoring = kustomization(K8S / "monitoring")
    assert sorted(monitoring["resources"]) == ["prometheusrule.yaml", "servicemonitor.yaml"]
    assert base["images"] == [{"name": "garment-sorter", "newTag": project_version()}]


def test_base_manifests_validate_strictly():
    paths = [BASE / name for name in kustomization(BASE)["resources"]]
    code, output = kubernetes_validate(paths)
    assert code == 0, output
    version = KUBERNETES_VERSION.rsplit(".", 1)[0]
    for kind in ("deployment", "service", "horizontalpodautoscaler", "poddisruptionbudget"):
        assert f"passed for resource {kind}/garment-sorter against version {version}" in output


def test_gpu_variant_validates_strictly(tmp_path):
    rendered = render_gpu()
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump_all(rendered.values()))
    code, output = kubernetes_validate([path])
    assert code == 0, output
    assert output.count("passed for resource") == 4


def test_strict_validation_rejects_a_typo(tmp_path, base):
    broken = copy.deepcopy(base["Deployment"])
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(broken))
    code, output = kubernetes_validate([path])
    assert code == 1
    assert "readinesProbe" in output


def test_gpu_variant_requests_one_gpu_and_changes_nothing_else():
    base, gpu = base_resources(), render_gpu()
    pod = gpu["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "nvidia.com/gpu" not in container["resources"]["requests"]  # extended resources: limit only
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # Same image, probes, drain timing and security settings as the CPU deployment.
    base_container = base["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    same = ("image", "ports", "env", "startupProbe", "livenessProbe", "readinessProbe", "lifecycle", "securityContext")
    for key in same:
        assert container[key] == base_container[key], key
    base_pod = base["Deployment"]["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == base_pod["terminationGracePeriodSeconds"]
    assert gpu["HorizontalPodAutoscaler"]["spec"]["maxReplicas"] == 4
    assert gpu["Service"] == base["Service"] and gpu["PodDisruptionBudget"] == base["PodDisruptionBudget"]


def test_probes_point_at_the_service_endpoints(container):
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    assert "EXPOSE 8000" in (REPO / "Dockerfile").read_text()
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, "time to load and warm the model"
    # Out of rotation at the first 503 from a draining pod.
    assert container["readinessProbe"]["failureThreshold"] == 1


def test_termination_grace_covers_pre_stop_and_drain(base, container):
    pod = base["Deployment"]["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    drain_s = float(env_of(container)["SORTER_DRAIN_TIMEOUT_S"])
    compose_api = load_yaml(DEPLOY / "compose.yaml")["services"]["api"]
    assert drain_s == float(compose_api["environment"]["SORTER_DRAIN_TIMEOUT_S"]) == 30
    assert pod["terminationGracePeriodSeconds"] == int(pre_stop[1]) + drain_s + 10


def test_resources_and_security(base, container):
    resources = container["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}
    assert quantity(resources["requests"]["cpu"]) <= quantity(resources["limits"]["cpu"])
    assert quantity(resources["requests"]["memory"]) <= quantity(resources["limits"]["memory"])
    pod = base["Deployment"]["spec"]["template"]["spec"]
    uid = re.search(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.M)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (int(uid[1]), int(uid[2]))
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    # Read-only root: /tmp and the decision log's data directory are the writable places.
    assert container["volumeMounts"] == [
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "data", "mountPath": env_of(container)["SORTER_DATA_DIR"]},
    ]


def test_image_and_environment(container):
    assert container["image"] == f"garment-sorter:{project_version()}"
    assert container["image"] == load_yaml(DEPLOY / "compose.yaml")["services"]["api"]["image"]
    env = env_of(container)
    assert set(env) <= sorter_env_fields(), set(env) - sorter_env_fields()
    assert env["SORTER_MODEL_DIR"] == "/srv/garment-sorter/models/fashion-cnn"
    # Two or more replicas: one decision log in PostgreSQL, the URL (with its password) in a Secret.
    assert env["SORTER_DATABASE_URL"] == "secret:garment-sorter-db/url"


def test_selectors_and_references_line_up(base, container):
    deployment, service = base["Deployment"], base["Service"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"] == pod_labels
    assert service["spec"]["selector"] == pod_labels
    assert base["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"] == pod_labels
    assert [p["targetPort"] for p in service["spec"]["ports"]] == [container["ports"][0]["name"]]

    hpa = base["HorizontalPodAutoscaler"]["spec"]
    target = {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment["metadata"]["name"]}
    assert hpa["scaleTargetRef"] == target
    # A disruption may take one pod; at the HPA's floor another one must still serve.
    assert hpa["minReplicas"] >= 2 and base["PodDisruptionBudget"]["spec"]["maxUnavailable"] < hpa["minReplicas"]
    assert deployment["spec"]["replicas"] == hpa["minReplicas"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_service_monitor_scrapes_the_service(base):
    monitor = load_yaml(K8S / "monitoring" / "servicemonitor.yaml")
    service = base["Service"]
    assert monitor["spec"]["selector"]["matchLabels"] == service["metadata"]["labels"]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [p["name"] for p in service["spec"]["ports"]]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    # The operator's job label is the Service name: the job the alert rules select.
    assert service["metadata"]["name"] == "garment-sorter"
    assert 'up{job="garment-sorter"}' in RULES_FILE.read_text()


def test_prometheus_rule_is_the_rules_file():
    rule = load_yaml(K8S / "monitoring" / "prometheusrule.yaml")
    assert (rule["apiVersion"], rule["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert rule["spec"] == load_yaml(RULES_FILE), "run deploy/k8s/monitoring/sync-prometheusrule.py"


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "": 1}
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|)", str(value)).groups()
    return float(number) * units[unit]
