"""docker-compose.yaml: the production services, secrets only from .env, and `docker compose config`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text(encoding="utf-8"))


def test_compose_has_the_production_services():
    services = set(_compose()["services"])
    assert {"postgres", "redis", "mailpit", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "airflow-init"} <= services
    worker = _compose()["services"]["airflow-worker"]
    assert worker["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"


def test_every_secret_comes_from_env_and_is_in_the_example():
    text = (REPO / "docker-compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = {line.split("=", 1)[0] for line in (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
               if "=" in line and not line.startswith("#")}
    assert used <= example, used - example
    assert not re.search(r"PASSWORD:\s*[^$\s{]", text)  # no literal password
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "${AIRFLOW_JWT_SECRET}"  # one secret for all services
    assert env["AIRFLOW_CONN_ADMISSION_DB"].endswith("@postgres:5432/admission")
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


def test_project_folders_are_mounted():
    volumes = _compose()["services"]["airflow-scheduler"]["volumes"]
    targets = {v.split(":")[1] for v in volumes}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/project/include"} <= targets


@pytest.mark.skipif(not (shutil.which("docker") or shutil.which("docker-compose")), reason="no Docker client")
def test_docker_compose_config_accepts_the_file():
    candidates = [["docker", "compose"], ["docker-compose"]]
    for cmd in candidates:
        if not shutil.which(cmd[0]):
            continue
        probe = subprocess.run([*cmd, "version"], capture_output=True, text=True)
        if probe.returncode != 0:
            continue
        out = subprocess.run([*cmd, "--env-file", ".env.example", "config", "--quiet"], cwd=REPO,
                             capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return
    pytest.skip("neither `docker compose` nor `docker-compose` is installed")
