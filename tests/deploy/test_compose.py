"""docker-compose.yaml: the production services, secrets only from .env, and `docker compose config`."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yaml").read_text(encoding="utf-8"))


def _compose_cli() -> list[str] | None:
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run([*cmd, "version"], capture_output=True).returncode == 0:
            return cmd
    return None


def _real_env(tmp_path: Path) -> Path:
    """The example .env with every secret filled in as an admin would (generated, never a placeholder)."""
    import base64
    import os
    import secrets

    values = {"POSTGRES_PASSWORD": secrets.token_urlsafe(24), "ADMISSION_DB_PASSWORD": secrets.token_urlsafe(24),
              "AIRFLOW_JWT_SECRET": secrets.token_urlsafe(32), "AIRFLOW_ADMIN_PASSWORD": secrets.token_urlsafe(16),
              "AIRFLOW_FERNET_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
              "ADMISSION_SMTP_CONN": '{"conn_type":"smtp","host":"mail.region.example","port":587}'}
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    for key, value in values.items():
        text = re.sub(rf"^{key}=$", lambda _m, k=key, v=value: f"{k}={v}", text, flags=re.M)
    path = tmp_path / "real.env"
    path.write_text(text, encoding="utf-8")
    return path


def _env_values(path: Path) -> dict[str, str]:
    return {k: v for k, _, v in (line.partition("=") for line in path.read_text(encoding="utf-8").splitlines()
                                 if "=" in line and not line.startswith("#"))}


SECRETS = ("POSTGRES_PASSWORD", "ADMISSION_DB_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_FERNET_KEY",
           "AIRFLOW_ADMIN_PASSWORD")


def test_compose_has_the_production_services_and_mailpit_only_for_a_trial():
    services = _compose()["services"]
    assert {"postgres", "redis", "mailpit", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "airflow-init"} <= set(services)
    assert services["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert services["mailpit"]["profiles"] == ["trial"]
    assert all("profiles" not in svc for name, svc in services.items() if name != "mailpit")


def test_published_ports_listen_on_loopback_and_images_are_pinned():
    services = _compose()["services"]
    published = [(name, p) for name, svc in services.items() for p in svc.get("ports", [])]
    assert published and all(p.startswith("${ADMISSION_BIND_ADDRESS:-127.0.0.1}:") for _, p in published), published
    for name, svc in services.items():
        image = svc.get("image", "")
        if name.startswith("airflow-"):
            continue  # the project's own image, built from the Dockerfile
        assert re.fullmatch(r"[\w./-]+:v?\d+\.\d+(\.\d+)?(-[\w.]+)?", image), f"{name}: {image} is not pinned"
    assert re.search(r"^FROM apache/airflow:\d+\.\d+\.\d+-python3\.11$", (REPO / "Dockerfile").read_text(), re.M)


def test_every_secret_comes_from_env_is_required_and_left_empty_in_the_example():
    text = (REPO / "docker-compose.yaml").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", text))
    example = _env_values(REPO / ".env.example")
    assert used <= set(example), used - set(example)
    assert not re.search(r"^\s*\w*PASSWORD:\s*[^$\s{]", text, re.M)  # no literal password
    for name in SECRETS:
        assert example[name] == "", f"{name} has a value in .env.example"
        uses = re.findall(rf"\$\{{{name}(:\?|:-|\}})", text)
        assert uses and set(uses) == {":?"}, f"{name} must be required (${{{name}:?...}}) wherever it is used"
    env = _compose()["services"]["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"].startswith("${AIRFLOW_JWT_SECRET:?")  # one secret for all services
    assert env["AIRFLOW_CONN_ADMISSION_DB"].endswith("@postgres:5432/admission")
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


def test_test_tools_stay_out_of_the_production_image():
    dockerfile = (REPO / "Dockerfile").read_text()
    installs = re.findall(r"pip install[^\n]*-r\s+(\S+)", dockerfile)
    assert installs == ["requirements.txt"]
    runtime = {line.split("==")[0].lower() for line in (REPO / "requirements.txt").read_text().splitlines()
               if "==" in line}
    assert not runtime & {"pytest", "aiosmtpd", "ruff", "iniconfig", "atpublic"}
    assert "-r requirements-dev.txt" in (REPO / "Makefile").read_text()


def test_project_folders_are_mounted():
    volumes = _compose()["services"]["airflow-scheduler"]["volumes"]
    targets = {v.split(":")[1] for v in volumes}
    assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/project/include"} <= targets


def _check(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "deploy" / "check_secrets.py"), "check"], env=env,
                          capture_output=True, text=True)


def test_init_refuses_placeholder_short_and_malformed_secrets_naming_them(tmp_path):
    good = {k: v for k, v in _env_values(_real_env(tmp_path)).items() if k in SECRETS}
    assert _check(good).returncode == 0
    for name, bad in [("POSTGRES_PASSWORD", "change-me-postgres"), ("AIRFLOW_JWT_SECRET", "Xq7z2"),
                      ("AIRFLOW_FERNET_KEY", "not-a-fernet-key"), ("AIRFLOW_ADMIN_PASSWORD", "")]:
        out = _check(good | {name: bad})
        assert out.returncode == 1 and name in out.stderr, (name, out.stderr)
        assert not bad or bad not in out.stderr  # a secret is never printed


def test_the_api_server_checks_the_admin_password_from_env(tmp_path, monkeypatch):
    """The passwords file the API server writes at start is the one SimpleAuthManager reads."""
    env = _env_values(_real_env(tmp_path))
    target = tmp_path / "auth" / "passwords.json"
    out = subprocess.run([sys.executable, str(REPO / "deploy" / "check_secrets.py"), "write-passwords",
                          str(target)], env={"AIRFLOW_ADMIN_USER": "admin", **env}, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(target))
    assert SimpleAuthManager.get_passwords() == {"admin": env["AIRFLOW_ADMIN_PASSWORD"]}


@pytest.mark.skipif(_compose_cli() is None, reason="no Docker Compose CLI (.ci/run installs one)")
def test_docker_compose_config_refuses_the_placeholder_env_and_accepts_real_secrets(tmp_path):
    cli = _compose_cli()
    out = subprocess.run([*cli, "--env-file", ".env.example", "config", "--quiet"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode != 0 and "POSTGRES_PASSWORD" in out.stderr, out.stderr
    out = subprocess.run([*cli, "--env-file", str(_real_env(tmp_path)), "config", "--quiet"], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
