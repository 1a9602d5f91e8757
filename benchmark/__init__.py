"""reprorec's core: data, splits, evaluation, tuning, tracking, reporting and the command line."""

__version__ = "0.1.0"
