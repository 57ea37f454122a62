"""yamllint --strict over every YAML file under deploy/ (settings: deploy/yamllint.yaml)."""

from __future__ import annotations

from deploy_helpers import DEPLOY, require_tool, run

CONFIG = DEPLOY / "yamllint.yaml"


def yamllint(*paths: str) -> tuple[int, str]:
    exe = require_tool("yamllint", "pip install yamllint (part of the dev extra)")
    result = run([exe, "--strict", "--format", "parsable", "--config-file", str(CONFIG), *paths])
    return result.returncode, result.stdout + result.stderr


def test_deploy_yaml_is_lint_clean():
    yaml_files = sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yml", ".yaml"})
    assert len(yaml_files) >= 16
    code, output = yamllint("deploy")
    assert (code, output) == (0, "")


def test_yamllint_reports_problems(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  api:\n    image: a\n  api:\n    image: b\nflag: yes\n")
    code, output = yamllint(str(bad))
    assert code == 1
    assert "key-duplicates" in output and "truthy" in output
