"""MUSE's metric names and table (open-unlearning's ``configs/eval/muse.yaml`` metrics)."""

from __future__ import annotations

from unlearn.benchmarks.base import Metric, MetricTable
from unlearn.metrics.mia import MIA_LOSS, MIA_MIN_K, MIA_MIN_K_PLUS_PLUS, MIA_ZLIB

FORGET_VERBMEM_ROUGE = "forget_verbmem_rouge"
FORGET_KNOWMEM_ROUGE = "forget_knowmem_rouge"
RETAIN_KNOWMEM_ROUGE = "retain_knowmem_rouge"
PRIVLEAK = "privleak"
ABS_PRIVLEAK = "abs_privleak"
PRIVLEAK_AUC = "privleak_auc"
FORGET_ES = "forget_es"
MIA_METRICS: tuple[str, ...] = (MIA_LOSS, MIA_ZLIB, MIA_MIN_K, MIA_MIN_K_PLUS_PLUS)
CI_LEVEL = 0.95  # each AUC's (and privleak's) DeLong interval


def ci_low(metric: str) -> str:
    """The name of the lower end of ``metric``'s 95 % interval (``mia_min_k_ci95_low``)."""
    return f"{metric}_ci95_low"


def ci_high(metric: str) -> str:
    """The name of the upper end of ``metric``'s 95 % interval (``mia_min_k_ci95_high``)."""
    return f"{metric}_ci95_high"


WITH_INTERVAL: tuple[str, ...] = (*MIA_METRICS, PRIVLEAK)

# Per-item statistics (``EvalOutput.per_item``), each list in its set's order: the values a metric averages
# keep the metric's name (forget_verbmem_rouge and forget_es per verbmem row, forget_knowmem_rouge and
# retain_knowmem_rouge per knowmem question); privleak_auc's inputs are each privleak text's min-k% score
PRIVLEAK_FORGET_MIN_K = "privleak_forget_min_k"
PRIVLEAK_HOLDOUT_MIN_K = "privleak_holdout_min_k"
PER_ITEM: tuple[str, ...] = (FORGET_VERBMEM_ROUGE, FORGET_ES, FORGET_KNOWMEM_ROUGE, RETAIN_KNOWMEM_ROUGE,
                             PRIVLEAK_FORGET_MIN_K, PRIVLEAK_HOLDOUT_MIN_K)

TABLE = MetricTable((
    Metric(FORGET_VERBMEM_ROUGE, "min", shown=True, needs_generation=True,
           doc="ROUGE-L F1 of the greedy continuation of each verbmem forget prompt"),
    Metric(FORGET_KNOWMEM_ROUGE, "min", shown=True, needs_generation=True,
           doc="ROUGE-L F1 of greedy answers to the forget knowmem questions (few-shot)"),
    Metric(RETAIN_KNOWMEM_ROUGE, "max", utility=True, shown=True, needs_generation=True,
           doc="ROUGE-L F1 of greedy answers to the retain knowmem questions (few-shot)"),
    Metric(PRIVLEAK, "zero", shown=True,
           doc="min-k% (k=0.4) AUC of privleak forget vs holdout, relative to the retain model's (0: like it)"),
    Metric(ABS_PRIVLEAK, "min", doc="|privleak|: what a space minimises"),
    Metric(PRIVLEAK_AUC, "none", doc="the raw min-k% AUC of forget vs holdout (0.5: indistinguishable)"),
    Metric(FORGET_ES, "min", shown=True, doc="extraction strength of the verbmem forget continuations"),
    *(Metric(n, "none", doc="membership-attack ROC AUC of privleak forget vs holdout texts") for n in MIA_METRICS),
    *(Metric(f(n), "none", doc=f"{end} end of {n}'s 95 % DeLong interval (privleak: from its AUC's, the retain AUC "
                               "held fixed)")
      for n in WITH_INTERVAL for f, end in ((ci_low, "lower"), (ci_high, "upper"))),
), utility_metric=RETAIN_KNOWMEM_ROUGE)
