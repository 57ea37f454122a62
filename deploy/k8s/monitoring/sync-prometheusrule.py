"""Rewrite prometheusrule.yaml from deploy/prometheus/rules/garment-sorter.yml (the source of truth).

.venv/bin/python deploy/k8s/monitoring/sync-prometheusrule.py
"""

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE.parents[1] / "prometheus" / "rules" / "garment-sorter.yml"
HEADER = """\
# The alert and recording rules of deploy/prometheus/rules/garment-sorter.yml for the Prometheus
# Operator. spec.groups is a copy of that file: tests/deploy/test_k8s.py fails when they differ.
# Regenerate with: .venv/bin/python deploy/k8s/monitoring/sync-prometheusrule.py
"""


class _Dumper(yaml.SafeDumper):
    # Indent list items under their key, as yamllint's default `indentation` rule expects.
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def main() -> None:
    labels = {"app.kubernetes.io/name": "garment-sorter", "app.kubernetes.io/component": "inference"}
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "garment-sorter", "labels": labels},
        "spec": yaml.safe_load(RULES.read_text()),
    }
    body = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200, allow_unicode=True)
    (HERE / "prometheusrule.yaml").write_text(HEADER + body)


if __name__ == "__main__":
    main()
