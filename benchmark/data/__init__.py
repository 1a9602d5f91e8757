"""Datasets: the interaction matrix, the dataset registry, fetching and preprocessing."""

from benchmark.data.interactions import InteractionMatrix

__all__ = ["InteractionMatrix"]
