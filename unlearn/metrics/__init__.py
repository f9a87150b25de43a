"""TOFU evaluation suite: metric names, the maths, and ``evaluate`` over a model and its splits."""

from unlearn.metrics import names
from unlearn.metrics.evaluate import (
    EvalConfig,
    EvalResult,
    check_retain_stats,
    evaluate,
    retain_stats_from_file,
    save_retain_stats,
)
from unlearn.metrics.names import (
    ALL_METRICS,
    FORGET_QUALITY,
    HIGHER_IS_BETTER,
    MODEL_UTILITY,
    optuna_direction,
    tune_mode,
)
from unlearn.metrics.tofu import (
    answer_logprob_stats,
    answer_token_stats,
    extraction_strength,
    extraction_strength_batch,
    extraction_strength_masked,
    forget_quality,
    model_utility,
    normalised_prob,
    option_probability,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_closer_to_one,
    truth_ratio_true_better,
)

__all__ = [
    "ALL_METRICS",
    "FORGET_QUALITY",
    "HIGHER_IS_BETTER",
    "MODEL_UTILITY",
    "EvalConfig",
    "EvalResult",
    "answer_logprob_stats",
    "answer_token_stats",
    "check_retain_stats",
    "evaluate",
    "extraction_strength",
    "extraction_strength_batch",
    "extraction_strength_masked",
    "forget_quality",
    "model_utility",
    "names",
    "normalised_prob",
    "optuna_direction",
    "option_probability",
    "retain_stats_from_file",
    "rouge_l_recall",
    "save_retain_stats",
    "truth_ratio",
    "truth_ratio_closer_to_one",
    "truth_ratio_true_better",
    "tune_mode",
]
