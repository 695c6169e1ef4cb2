"""`make airflow`: the Airflow UI with the project's DAGs and campaign page, every component on 127.0.0.1.

What ``airflow standalone`` does, minus what it cannot be told: it starts its components by the bare name
``airflow`` (not on PATH outside the venv) and their log servers listen on every interface. Here the API
server listens on 127.0.0.1, the scheduler and triggerer run with ``--skip-serve-logs`` (with the
LocalExecutor the task logs are files the API server reads itself), and the admin's password is generated
once into the SimpleAuthManager's passwords file and printed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent
COMPONENTS = {
    "api-server": ["api-server", "--host", "127.0.0.1", "--port", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def _secret(path: Path) -> str:
    """A secret kept in AIRFLOW_HOME (the JWT key): sessions survive a restart, and nothing is in the repo."""
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def admin_password(passwords: Path, user: str = "admin") -> str:
    """The admin's password from the SimpleAuthManager's file, generated (and the file written) the first time."""
    known = json.loads(passwords.read_text(encoding="utf-8")) if passwords.exists() else {}
    if user not in known:
        known[user] = secrets.token_urlsafe(12)
        passwords.write_text(json.dumps(known), encoding="utf-8")
        passwords.chmod(0o600)
    return known[user]


def environment(home: Path, port: int) -> dict[str, str]:
    passwords = home / "simple_auth_manager_passwords.json.generated"
    return os.environ | {
        "AIRFLOW_HOME": str(home),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__API_AUTH__JWT_SECRET": _secret(home / "jwt_secret"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS",
                                                                   "admin:admin"),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__API__INSTANCE_NAME": os.environ.get("AIRFLOW__API__INSTANCE_NAME",
                                                      "Мониторинг приема в 1-й класс"),
        # Where the digests' page links point (admission.report.links): this local Airflow.
        "AIRFLOW_VAR_ADMISSION_PAGE_URL": os.environ.get("AIRFLOW_VAR_ADMISSION_PAGE_URL", f"http://127.0.0.1:{port}"),
        # The plan's time zone for dates typed without one (the UI itself shows the browser's time zone).
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": os.environ.get("AIRFLOW__CORE__DEFAULT_TIMEZONE", "Europe/Moscow"),
    }


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as resp:
            return resp.status == 200
    except OSError:
        return False


def start(home: Path, port: int, logs: Path | None = None, extra: dict[str, str] | None = None
          ) -> dict[str, subprocess.Popen]:
    """Start every component (in its own process group); their output goes to ``logs``/<name>.log or ours.
    ``extra``: settings over this process's environment (the tests' folders)."""
    env = environment(home, port) | (extra or {})
    procs = {}
    for name, args in COMPONENTS.items():
        out = open(logs / f"{name}.log", "ab") if logs else None  # noqa: SIM115 (lives as long as the process)
        procs[name] = subprocess.Popen([str(BIN / "airflow"), *(a.format(port=port) for a in args)], env=env,
                                       stdout=out, stderr=subprocess.STDOUT if out else None,
                                       start_new_session=True)
    return procs


def stop(procs: dict[str, subprocess.Popen]) -> None:
    for proc in procs.values():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in procs.values():
        try:
            proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    home = Path(os.environ.get("AIRFLOW_HOME", Path.home() / "airflow")).resolve()
    home.mkdir(parents=True, exist_ok=True)
    port = int(os.environ.get("AIRFLOW_PORT", "8080"))
    password = admin_password(Path(environment(home, port)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]))
    # The components run in their own process groups (so that stop() ends each one's children too): a TERM or
    # HUP to this launcher must still reach them, through the `finally` below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(0))
    from admission.tools.demo_sites import serving_from_env

    demo_sites = serving_from_env()  # the demo region's websites (loopback), when the Makefile asks for them
    demo_sites.__enter__()
    procs = start(home, port)
    try:
        deadline = time.monotonic() + 180
        while not healthy(port):
            dead = [n for n, p in procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                print(f"Airflow did not start ({', '.join(dead) or 'no answer in 180 s'}): see the output above",
                      file=sys.stderr)
                return 1
            time.sleep(1)
        print(f"\nAirflow UI:      http://127.0.0.1:{port}  (login: admin, password: {password})\n"
              f"Campaign page:   http://127.0.0.1:{port}/admission/  (also in the UI menu «Browse»)\n"
              f"Stop with Ctrl-C.\n", flush=True)
        while all(p.poll() is None for p in procs.values()):
            time.sleep(1)
        print("an Airflow component stopped: " + ", ".join(n for n, p in procs.items() if p.poll() is not None),
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        stop(procs)
        demo_sites.__exit__(None, None, None)


if __name__ == "__main__":
    sys.exit(main())
