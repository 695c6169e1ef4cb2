"""A real IMAP server for the tests: Debian's dovecot on loopback, a temporary configuration, one test user.

Implicit TLS (IMAPS) with a certificate of a throwaway CA, so that the client's verification is exercised.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"


def available() -> bool:
    return Path(DOVECOT).exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Dovecot:
    """dovecot -F with its own base, state and mail folders under ``folder``."""

    def __init__(self, cert: Path, key: Path, user: str = "intake", password: str = "secret-pw"):
        import pwd
        import tempfile

        # Its own folder, readable by dovecot's unprivileged users (pytest's tmp_path is private to its owner).
        folder = Path(tempfile.mkdtemp(prefix="admission-dovecot-"))
        os.chmod(folder, 0o755)
        for pem in (cert, key):
            shutil.copy(pem, folder / pem.name)
        cert, key = folder / cert.name, folder / key.name
        self.folder, self.user, self.password = folder, user, password
        self.port = _free_port()
        run, mail = folder / "run", folder / "mail"
        for d in (run, mail, folder / "state"):
            d.mkdir(parents=True, exist_ok=True)
        owner = pwd.getpwuid(os.getuid()) if os.getuid() != 0 else pwd.getpwnam("nobody")
        if os.getuid() == 0:  # dovecot will not deliver as root: the mail belongs to «nobody»
            os.chown(mail, owner.pw_uid, owner.pw_gid)
        (folder / "passwd").write_text(f"{user}:{{PLAIN}}{password}::::::\n")
        conf = folder / "dovecot.conf"
        conf.write_text(f"""
base_dir = {run}
state_dir = {folder / 'state'}
log_path = {folder / 'dovecot.log'}
info_log_path = {folder / 'dovecot.log'}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
auth_mechanisms = plain
first_valid_uid = 1
mail_location = maildir:{mail}/%u
default_internal_user = {'dovecot' if os.getuid() == 0 else owner.pw_name}
default_login_user = {'dovenull' if os.getuid() == 0 else owner.pw_name}
passdb {{
  driver = passwd-file
  args = {folder / 'passwd'}
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.proc.stdout.read().decode(errors='replace')}\n"
                                   f"{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not listen in 20 s: " + self.log())

    def log(self) -> str:
        path = self.folder / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def conn_json(self, **extra) -> str:
        """The Airflow connection (``AIRFLOW_CONN_ADMISSION_IMAP``); ``extra``: e.g. ``ca_bundle=...``."""
        import json

        return json.dumps({"conn_type": "imap", "host": "127.0.0.1", "port": self.port, "login": self.user,
                           "password": self.password, "extra": {"use_ssl": True, **extra}})

    def client(self, ca: Path):
        import imaplib
        import ssl

        ctx = ssl.create_default_context(cafile=str(ca))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=ctx)
        client.login(self.user, self.password)
        return client

    def append(self, ca: Path, raw: bytes, folder: str = "INBOX") -> None:
        client = self.client(ca)
        try:
            typ, data = client.append(folder, "", None, raw)
            assert typ == "OK", data
        finally:
            client.logout()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
