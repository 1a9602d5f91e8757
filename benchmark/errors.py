"""Exception types of reprorec.

Every error that reaches a user names what is wrong (file, field, value) so that it can be fixed
without reading the code.
"""

from __future__ import annotations


class ReproRecError(Exception):
    """Base class of every error raised on purpose by reprorec."""


class DataError(ReproRecError, ValueError):
    """Malformed or inconsistent input data.

    Args:
        message: what is wrong.
        file: the file the data came from, when known.
        line: the 1-based line number in ``file``, when known.
        field: the column / field name, when known.
        value: the offending value, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        value: object = None,
    ) -> None:
        parts = []
        if file is not None:
            parts.append(f"{file}:{line}" if line is not None else str(file))
        if field is not None:
            parts.append(f"field {field!r}")
        if value is not None:
            parts.append(f"value {value!r}")
        where = f" ({', '.join(parts)})" if parts else ""
        super().__init__(f"{message}{where}")
        self.file = file
        self.line = line
        self.field = field
        self.value = value


class ChecksumError(ReproRecError):
    """A downloaded or mirrored file does not have its pinned sha256."""

    def __init__(self, path: str, expected: str, actual: str) -> None:
        super().__init__(
            f"sha256 mismatch for {path}: expected {expected}, got {actual}; "
            "the file was not used and nothing in the cache was overwritten"
        )
        self.path = path
        self.expected = expected
        self.actual = actual


class UnknownNameError(ReproRecError, KeyError):
    """A dataset, splitter, metric or model name that is not registered."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]) -> None:
        super().__init__(f"unknown {kind} {name!r}; known: {', '.join(sorted(known))}")
        self.kind = kind
        self.name = name
        self.known = tuple(known)

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class LeakageError(ReproRecError):
    """A split whose parts overlap, or whose test set could leak into training."""


class ConfigError(ReproRecError, ValueError):
    """An invalid hyperparameter or configuration value."""


class ModelError(ReproRecError):
    """A model misbehaved (wrong score shape, NaN or inf scores, diverging loss)."""


class MetricNotComputedError(ConfigError):
    """The tuning metric is not among what the evaluator computes: every trial would fail alike."""
