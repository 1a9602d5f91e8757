"""Browser tests: headless Debian Chromium driven by playwright (never ``playwright install``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SKIP_REASON = (
    "Debian chromium not installed at /usr/bin/chromium "
    "(run scripts/install_chromium.sh; playwright's own browser download is never used)"
)


def launch_chromium(playwright: Any) -> Any:
    """Headless Chromium from the Debian package, loopback traffic only."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
