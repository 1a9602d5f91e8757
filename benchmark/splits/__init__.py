"""Splits: the frozen Split type, splitters, published split readers and the split store."""

from benchmark.splits.split import Split

__all__ = ["Split"]
