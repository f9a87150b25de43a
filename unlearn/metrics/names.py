"""Metric names shared by the Tune ``metric``, the Optuna objective and the MLflow keys.

Every metric the evaluation suite reports is a constant here, with its direction in
``HIGHER_IS_BETTER``. ``tune_mode`` and ``optuna_direction`` translate a direction for each library.
"""

from __future__ import annotations

from typing import Literal

from unlearn.errors import unknown_name

FORGET = "forget"
RETAIN = "retain"
REAL_AUTHORS = "real_authors"
WORLD_FACTS = "world_facts"
SPLITS: tuple[str, ...] = (FORGET, RETAIN, REAL_AUTHORS, WORLD_FACTS)
"""Evaluation splits, in the order TOFU reports them."""

FORGET_QUALITY = "forget_quality"
MODEL_UTILITY = "model_utility"

FORGET_PROB = "forget_prob"
FORGET_ROUGE = "forget_rouge"
FORGET_TRUTH_RATIO = "forget_truth_ratio"
RETAIN_PROB = "retain_prob"
RETAIN_ROUGE = "retain_rouge"
RETAIN_TRUTH_RATIO = "retain_truth_ratio"
REAL_AUTHORS_PROB = "real_authors_prob"
REAL_AUTHORS_ROUGE = "real_authors_rouge"
REAL_AUTHORS_TRUTH_RATIO = "real_authors_truth_ratio"
WORLD_FACTS_PROB = "world_facts_prob"
WORLD_FACTS_ROUGE = "world_facts_rouge"
WORLD_FACTS_TRUTH_RATIO = "world_facts_truth_ratio"

FORGET_ES = "forget_es"
# ES of the forget answers asked with TOFU's paraphrased question (the SatImp paper's second ES column)
FORGET_ES_PARAPHRASED = "forget_es_paraphrased"
RETAIN_ES = "retain_es"

UTILITY_METRICS: tuple[str, ...] = (
    RETAIN_PROB, RETAIN_ROUGE, RETAIN_TRUTH_RATIO,
    REAL_AUTHORS_PROB, REAL_AUTHORS_ROUGE, REAL_AUTHORS_TRUTH_RATIO,
    WORLD_FACTS_PROB, WORLD_FACTS_ROUGE, WORLD_FACTS_TRUTH_RATIO,
)
"""The nine statistics whose harmonic mean is the model utility."""

ALL_METRICS: tuple[str, ...] = (
    FORGET_QUALITY, MODEL_UTILITY,
    FORGET_PROB, FORGET_ROUGE, FORGET_TRUTH_RATIO,
    *UTILITY_METRICS,
    FORGET_ES, FORGET_ES_PARAPHRASED, RETAIN_ES,
)

# Forget-set statistics measure what is left to unlearn, so lower is better there. The forget truth
# ratio is the exception: aggregated as mean(min(R, 1/R)), it is highest when paraphrase and perturbed
# answers are equally likely, i.e. when the model no longer knows which one is true.
LOWER_IS_BETTER: frozenset[str] = frozenset({FORGET_PROB, FORGET_ROUGE, FORGET_ES, FORGET_ES_PARAPHRASED})
HIGHER_IS_BETTER: dict[str, bool] = {name: name not in LOWER_IS_BETTER for name in ALL_METRICS}


def split_metric(split: str, stat: Literal["prob", "rouge", "truth_ratio", "es"]) -> str:
    """Name of statistic ``stat`` on ``split``, e.g. ``split_metric("retain", "prob") -> "retain_prob"``.

    Raises:
        UnknownNameError: if the combination is not a reported metric.
    """
    name = f"{split}_{stat}"
    if name not in HIGHER_IS_BETTER:
        raise unknown_name("metric", name, ALL_METRICS)
    return name


def _direction(name: str) -> bool:
    try:
        return HIGHER_IS_BETTER[name]
    except KeyError:
        raise unknown_name("metric", name, ALL_METRICS) from None


def tune_mode(name: str) -> Literal["max", "min"]:
    """Ray Tune ``mode`` for metric ``name``."""
    return "max" if _direction(name) else "min"


def optuna_direction(name: str) -> Literal["maximize", "minimize"]:
    """Optuna study ``direction`` for metric ``name``."""
    return "maximize" if _direction(name) else "minimize"
