"""SMTP over verified TLS, against real aiosmtpd servers on loopback with certificates of a test CA."""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import pytest
from admission.mail.outbox import InsecureSmtpConfig, SmtpTransport, TransientError, smtp_settings

from tests.helpers import ca_and_cert


class TlsSink:
    """aiosmtpd with implicit TLS (``implicit=True``) or STARTTLS; records deliveries and AUTH attempts."""

    def __init__(self, cert: Path, key: Path, implicit: bool):
        from aiosmtpd.controller import Controller

        self.received: list[bytes] = []
        self.auth_seen = False
        sink = self
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_ctx.load_cert_chain(cert, key)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                sink.received.append(envelope.original_content or envelope.content)
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            from aiosmtpd.smtp import AuthResult

            sink.auth_seen = True
            return AuthResult(success=True)

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        opts = dict(hostname="127.0.0.1", port=self.port, authenticator=authenticator)
        if implicit:  # the whole session is TLS (aiosmtpd does not count it as such for auth_require_tls)
            self.controller = Controller(Handler(), ssl_context=server_ctx, auth_require_tls=False, **opts)
        else:
            self.controller = Controller(Handler(), tls_context=server_ctx, require_starttls=True,
                                         auth_require_tls=True, **opts)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


@pytest.fixture
def pki(tmp_path):
    return ca_and_cert(tmp_path, ["127.0.0.1", "localhost"])


ROW = {"recipient": "head@school.example", "message": "Subject: x\nTo: head@school.example\n\nbody\n"}


def _send(settings) -> None:
    with SmtpTransport(settings) as transport:
        transport.deliver(ROW)


@pytest.mark.parametrize("implicit", [True, False], ids=["ssl", "starttls"])
def test_a_certificate_of_an_unknown_ca_is_refused_and_the_ca_bundle_extra_trusts_it(pki, implicit):
    ca, cert, key = pki
    sink = TlsSink(cert, key, implicit)
    try:
        mode = {"ssl": "true"} if implicit else {"starttls": "true"}
        with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            _send(smtp_settings("127.0.0.1", sink.port, "robot", "secret", mode))
        assert sink.received == [] and not sink.auth_seen  # the password never left
        _send(smtp_settings("127.0.0.1", sink.port, "robot", "secret", mode | {"ca_bundle": str(ca)}))
        assert len(sink.received) == 1 and sink.auth_seen
    finally:
        sink.stop()


def test_a_certificate_for_another_host_is_refused(tmp_path):
    ca, cert, key = ca_and_cert(tmp_path, ["mail.other.example"])
    sink = TlsSink(cert, key, implicit=False)
    try:
        with pytest.raises(TransientError, match="mismatch|doesn't match|not valid for|IP address"):
            _send(smtp_settings("127.0.0.1", sink.port, None, None, {"starttls": "true", "ca_bundle": str(ca)}))
        assert sink.received == []
    finally:
        sink.stop()


def test_a_password_is_never_sent_over_a_plain_connection(smtp_sink):
    settings = smtp_settings("127.0.0.1", smtp_sink.port, "robot", "secret", {"ssl": "false", "starttls": "false"})
    with pytest.raises(InsecureSmtpConfig):
        _send(settings)
    assert smtp_sink.connections == 0


def test_extras_of_airflows_smtp_connection_keep_their_meaning():
    assert smtp_settings("h", 587, None, None, {}).starttls is True  # STARTTLS by default on 587
    assert smtp_settings("h", 465, None, None, {}).ssl is True
    airflow_style = smtp_settings("h", 587, None, None, {"disable_ssl": "true", "disable_tls": "true",
                                                         "timeout": "7", "from_email": "robot@h.example"})
    assert (airflow_style.ssl, airflow_style.starttls, airflow_style.timeout) == (False, False, 7.0)
    assert airflow_style.from_email == "robot@h.example"
    assert smtp_settings("h", 465, None, None, {"disable_ssl": "true"}).ssl is False
    ours_win = smtp_settings("h", 25, None, None, {"starttls": "true", "disable_tls": "true"})
    assert ours_win.starttls is True
