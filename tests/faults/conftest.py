"""The fault-injection suite prints its figure (kills survived / tried) at the end of the session."""

from __future__ import annotations

from typing import Any

import pytest

#: (scenario, kills tried, kills survived): filled by the tests of this folder.
TALLY: list[tuple[str, int, int]] = []


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    if not TALLY:
        return
    tried = sum(t for _, t, _ in TALLY)
    survived = sum(s for _, _, s in TALLY)
    terminalreporter.section("fault injection")
    for name, t, s in TALLY:
        terminalreporter.write_line(f"{name}: {s}/{t}")
    terminalreporter.write_line(f"kills survived / tried: {survived}/{tried}")
