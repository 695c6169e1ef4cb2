"""One TLS rule for every connection the product opens (SMTP, IMAP): certificates and host names verified.

Python's ``smtplib`` and ``imaplib`` verify nothing unless given a context, and Airflow's IMAP provider switches
verification off when its global ``[email] ssl_context`` says ``none``; the product's connections take their
context from here only. ``ca_bundle`` (a connection extra) adds a PEM file of CAs — the Russian national CA, a
ministry's own — to the system's, instead of replacing them as ``SSL_CERT_FILE`` does for the whole process.
"""

from __future__ import annotations

import ssl


def verified_context(ca_bundle: str | None = None) -> ssl.SSLContext:
    """A client context that verifies the server against the system's CAs plus ``ca_bundle`` (when given)."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context
