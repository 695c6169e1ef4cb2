"""Deployment secrets: refuse placeholders, and hand the admin password from .env to the API server.

    python deploy/check_secrets.py check                  # airflow-init: exit 1 naming every bad secret
    python deploy/check_secrets.py write-passwords FILE   # airflow-apiserver, before it starts

docker-compose.yaml already refuses an empty secret (``${VAR:?}``); this catches what compose cannot:
the placeholders of an old ``.env.example`` ("change-me..."), secrets too short to be secrets, and a
Fernet key that is not one. Airflow's SimpleAuthManager reads its users' passwords from a JSON file
and invents a random password for any user missing there; the API server writes that file from
``AIRFLOW_ADMIN_PASSWORD`` at every start, so the password in ``.env`` is the one that logs in.
Nothing here prints a secret.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from pathlib import Path

SECRETS = ("POSTGRES_PASSWORD", "ADMISSION_DB_PASSWORD", "AIRFLOW_JWT_SECRET", "AIRFLOW_ADMIN_PASSWORD")
FERNET = "AIRFLOW_FERNET_KEY"
MIN_LENGTH = 12
PLACEHOLDERS = ("change-me", "changeme", "password", "secret", "admin")


def problems(env: dict[str, str]) -> list[str]:
    """One line per secret that must not be used, naming the variable (never its value)."""
    out = []
    for name in SECRETS:
        value = env.get(name, "")
        if not value:
            out.append(f"{name} is not set")
        elif any(value.lower().startswith(p) for p in PLACEHOLDERS):
            out.append(f"{name} is still a placeholder: generate one, e.g. "
                       "python -c 'import secrets; print(secrets.token_urlsafe(32))'")
        elif len(value) < MIN_LENGTH:
            out.append(f"{name} is shorter than {MIN_LENGTH} characters")
    key = env.get(FERNET, "")
    try:
        valid = len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32 if key else False
    except (binascii.Error, ValueError, UnicodeError):
        valid = False
    if not valid:
        out.append(f"{FERNET} is not a Fernet key (32 url-safe base64 bytes), generate one: python -c "
                   "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")
    return out


def write_passwords(path: Path, env: dict[str, str]) -> None:
    """The SimpleAuthManager passwords file: the admin user from .env with the password from .env."""
    user = env.get("AIRFLOW_ADMIN_USER") or "admin"
    password = env.get("AIRFLOW_ADMIN_PASSWORD", "")
    if not password:
        raise SystemExit("AIRFLOW_ADMIN_PASSWORD is not set")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({user: password}, fh)
        fh.write("\n")
    tmp.replace(path)


def main(argv: list[str]) -> int:
    if argv[:1] == ["check"]:
        bad = problems(dict(os.environ))
        for line in bad:
            print(f"refusing to start: {line}", file=sys.stderr)
        return 1 if bad else 0
    if argv[:1] == ["write-passwords"] and len(argv) == 2:
        write_passwords(Path(argv[1]), dict(os.environ))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
