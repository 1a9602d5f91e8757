"""The shared evaluation engine: masking, ranking, ties and metrics for every model.

>>> from benchmark.evaluation import Evaluator, METRICS
>>> ev = Evaluator(split.test, exclude=split.train, cutoffs=[10, 20], metrics=["ndcg", "recall"])
>>> result = ev.evaluate(model)            # doctest: +SKIP
>>> result.metrics("test")                 # {"test/ndcg_at_10": ..., ...}  # doctest: +SKIP
"""

from benchmark.evaluation.evaluator import DEFAULT_TIE_RULE, TIE_RULES, Evaluator
from benchmark.evaluation.metrics import METRICS, Metric, get_metric
from benchmark.evaluation.result import EvaluationResult

__all__ = [
    "DEFAULT_TIE_RULE",
    "METRICS",
    "TIE_RULES",
    "EvaluationResult",
    "Evaluator",
    "Metric",
    "get_metric",
]
