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


_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s/@:]*):[^\s/@]*@")


def redact_text(text: str) -> str:
    """Redact the password of every URL in a text (a command line, a resolved config, an error)."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", text)
