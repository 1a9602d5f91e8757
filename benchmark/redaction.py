"""Redaction of credentials: no password ever reaches a log, a report, an error or a command line.

Every URL reprorec prints or logs (tracking stores, Optuna storages, services) goes through
:func:`redact_url`; free text that may hold URLs (a command line, a resolved config, a traceback)
through :func:`redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit


def redact_url(url: str) -> str:
    """Replace the password of a URL by ``***`` (URLs without a password are unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def publication_url_problem(url: str, field: str) -> str | None:
    """Why ``url`` cannot be cited as where a report is published, or None when it can.

    A citation carries ``http(s)://host/...`` only: no credentials (``user:pass@``, shown redacted
    in the message), and no whitespace, brace or backslash (they break a BibTeX field).
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return f"{field}={redact_url(url)!r} is not a URL"
    if parts.username is not None or parts.password is not None:
        return f"{field}={redact_url(url)!r}: a published URL must not carry credentials (user:password@)"
    if parts.scheme not in ("http", "https") or not host:
        return f"{field}={url!r} is not an http(s) URL with a host (https://host/path)"
    if any(c.isspace() or c in "{}\\" for c in url):
        return f"{field}={url!r} contains whitespace, a brace or a backslash"
    return None


_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s/@]*@")


def redact_text(text: str) -> str:
    """Redact the password of every URL in a text (a command line, a resolved config, an error)."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)
