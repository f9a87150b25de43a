"""TOFU's metric names and its metric table (direction, utility, shown, needs generation).

The rest of the project reads ``TABLE`` through the benchmark plug-in; only this package names them.
"""

from __future__ import annotations

from typing import Literal

from unlearn.benchmarks.base import Metric, MetricTable
from unlearn.metrics.mia import MIA_LOSS, MIA_MIN_K, MIA_MIN_K_PLUS_PLUS, MIA_ZLIB

FORGET = "forget"
RETAIN = "retain"
REAL_AUTHORS = "real_authors"
WORLD_FACTS = "world_facts"
SPLITS: tuple[str, ...] = (FORGET, RETAIN, REAL_AUTHORS, WORLD_FACTS)
"""Evaluation splits, in the order TOFU reports them."""

FORGET_QUALITY = "forget_quality"
MODEL_UTILITY = "model_utility"
# Distances of the forget truth-ratio distribution to the retain model's (``maths.forget_distances``): selection
# statistics beside forget quality that average better over seeds (BENCHMARKS: "Which statistic to select on")
FORGET_LOG_QUALITY = "forget_log_quality"
FORGET_KS_D = "forget_ks_d"
FORGET_W1 = "forget_w1"
FORGET_CVM = "forget_cvm"
DISTANCE_METRICS: dict[str, str] = {"log_quality": FORGET_LOG_QUALITY, "ks_d": FORGET_KS_D, "w1": FORGET_W1,
                                    "cvm": FORGET_CVM}

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

# Membership inference on forget vs holdout answers (open-unlearning's TOFU mia_* and privleak metrics)
PRIVLEAK = "privleak"
ABS_PRIVLEAK = "abs_privleak"
MIA_METRICS: tuple[str, ...] = (MIA_LOSS, MIA_ZLIB, MIA_MIN_K, MIA_MIN_K_PLUS_PLUS)

UTILITY_METRICS: tuple[str, ...] = (
    RETAIN_PROB, RETAIN_ROUGE, RETAIN_TRUTH_RATIO,
    REAL_AUTHORS_PROB, REAL_AUTHORS_ROUGE, REAL_AUTHORS_TRUTH_RATIO,
    WORLD_FACTS_PROB, WORLD_FACTS_ROUGE, WORLD_FACTS_TRUTH_RATIO,
)
"""The nine statistics whose harmonic mean is the model utility."""


def _m(name: str, goal: str, **kw) -> Metric:
    return Metric(name, goal, utility=name in UTILITY_METRICS or name == MODEL_UTILITY,
                  needs_generation=name.endswith("_rouge") or name == MODEL_UTILITY, **kw)


# Forget-set statistics measure what is left to unlearn, so lower is better there. The forget truth
# ratio is the exception: aggregated as mean(min(R, 1/R)), it is highest when paraphrase and perturbed
# answers are equally likely, i.e. when the model no longer knows which one is true.
TABLE = MetricTable((
    _m(FORGET_QUALITY, "max", shown=True, doc="KS-test p-value of forget truth ratios vs the retain model's"),
    _m(MODEL_UTILITY, "max", shown=True, doc="harmonic mean of the nine utility statistics"),
    _m(FORGET_LOG_QUALITY, "max", doc="log10 of forget quality (floored at 1e-300): averages over seeds far better"),
    _m(FORGET_KS_D, "min", doc="KS statistic D of forget truth ratios vs the retain model's"),
    _m(FORGET_W1, "min", doc="Wasserstein-1 distance of forget log truth ratios vs the retain model's"),
    _m(FORGET_CVM, "min", doc="Cramér-von Mises statistic of forget truth ratios vs the retain model's"),
    _m(FORGET_PROB, "min"), _m(FORGET_ROUGE, "min", shown=True), _m(FORGET_TRUTH_RATIO, "max", shown=True),
    *(_m(n, "max") for n in UTILITY_METRICS),
    _m(FORGET_ES, "min", shown=True), _m(FORGET_ES_PARAPHRASED, "min", shown=True), _m(RETAIN_ES, "max"),
    _m(PRIVLEAK, "zero", doc="min-k% (k=0.4) AUC of forget vs holdout answers relative to the retain model's"),
    _m(ABS_PRIVLEAK, "min", doc="|privleak|: what a space minimises"),
    *(_m(n, "none", doc="membership-attack ROC AUC of forget vs holdout answers") for n in MIA_METRICS),
), utility_metric=MODEL_UTILITY)
"""TOFU's metric table (also the generated benchmark's)."""

ALL_METRICS: tuple[str, ...] = TABLE.names


def split_metric(split: str, stat: Literal["prob", "rouge", "truth_ratio", "es"]) -> str:
    """Name of statistic ``stat`` on ``split``, e.g. ``split_metric("retain", "prob") -> "retain_prob"``.

    Raises:
        UnknownNameError: if the combination is not a reported metric.
    """
    name = f"{split}_{stat}"
    TABLE.get(name)
    return name
