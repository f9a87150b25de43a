"""TOFU evaluation maths: pure tensor/array functions, no model, no tokenizer.

Conventions (as in TOFU and open-unlearning):
    * A sequence's answer log-probability is summed over its answer tokens (labels != -100) after the
      causal shift; its per-token normalised probability is ``exp(sum_logprob / n_tokens)``.
    * Truth ratio of a question: ``R = exp(mean_j avg_logp(perturbed_j) - avg_logp(true))``, where the
      true answer is the paraphrase (forget/retain) or the answer itself (real_authors/world_facts).
    * Forget truth-ratio statistic: ``mean(min(R, 1/R))``; other sets: ``mean(max(0, 1 - R))``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Sized

import numpy as np

from unlearn.errors import ConfigError
from unlearn.benchmarks.tofu.names import UTILITY_METRICS

Ragged = Sequence[Sequence[float]] | np.ndarray


def _row_means(values: Ragged, what: str) -> np.ndarray:
    """(N,) mean of each row of a (N, K) array or a ragged list of non-empty rows."""
    if isinstance(values, np.ndarray) and values.ndim == 2:
        if values.shape[1] == 0:
            raise ConfigError(f"{what} has no columns; each question needs at least one")
        return values.astype(np.float64).mean(axis=1)
    means = []
    for i, row in enumerate(values):
        if len(row) == 0:
            raise ConfigError(f"{what}[{i}] is empty; each question needs at least one value")
        means.append(float(np.mean(np.asarray(row, dtype=np.float64))))
    return np.asarray(means, dtype=np.float64)


def _row_sums(values: Ragged) -> np.ndarray:
    if isinstance(values, np.ndarray) and values.ndim == 2:
        return values.astype(np.float64).sum(axis=1)
    return np.asarray([float(np.sum(np.asarray(r, dtype=np.float64))) for r in values], dtype=np.float64)


def _check_same_length(a: Sized, b: Sized, what: str) -> None:
    if len(a) != len(b):
        raise ConfigError(f"{what}: {len(a)} questions against {len(b)} rows of alternatives")


def truth_ratio(true_avg_logp: Sequence[float] | np.ndarray, perturbed_avg_logp: Ragged) -> np.ndarray:
    """Raw truth ratio of each question: geometric-mean perturbed probability over true probability.

    Args:
        true_avg_logp: (N,) per-token mean log-prob of the true answer (paraphrase, or the answer
            itself where there is no paraphrase).
        perturbed_avg_logp: (N, K) or N ragged rows of per-token mean log-probs of perturbed answers.

    Returns:
        (N,) float64 ``R = exp(mean_j perturbed_j - true)``; < 1 when the true answer is preferred.
    """
    true = np.asarray(true_avg_logp, dtype=np.float64)
    _check_same_length(true, perturbed_avg_logp, "truth_ratio")
    with np.errstate(over="ignore"):
        return np.exp(_row_means(perturbed_avg_logp, "perturbed_avg_logp") - true)


def truth_ratio_closer_to_one(ratios: Sequence[float] | np.ndarray) -> float:
    """Forget-set statistic ``mean(min(R, 1/R))``: 1 when true and perturbed are equally likely.

    Args:
        ratios: (N,) raw truth ratios.
    """
    r = np.asarray(ratios, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return float(np.mean(np.exp(-np.abs(np.log(r)))))  # min(R, 1/R), also for R in {0, inf}


def truth_ratio_true_better(ratios: Sequence[float] | np.ndarray) -> float:
    """Statistic for the sets the model should still know: ``mean(max(0, 1 - R))``.

    Args:
        ratios: (N,) raw truth ratios.
    """
    r = np.asarray(ratios, dtype=np.float64)
    return float(np.mean(np.maximum(0.0, 1.0 - r)))


def option_probability(true_prob: Sequence[float] | np.ndarray, perturbed_prob: Ragged) -> np.ndarray:
    """Probability of the answer among the options, ``P(a) / (P(a) + sum_j P(perturbed_j))``.

    Used on real_authors/world_facts, with per-token normalised probabilities; the metric is the mean.

    Args:
        true_prob: (N,) normalised probability of each answer.
        perturbed_prob: (N, K) or N ragged rows of normalised probabilities of the wrong options.

    Returns:
        (N,) float64 values in [0, 1].
    """
    true = np.asarray(true_prob, dtype=np.float64)
    _check_same_length(true, perturbed_prob, "option_probability")
    return true / (true + _row_sums(perturbed_prob))


def forget_quality(
    unlearned_tr: Sequence[float] | np.ndarray, retain_tr: Sequence[float] | np.ndarray
) -> float:
    """KS-test p-value between the forget-set truth ratios of the unlearned and the retain model.

    Args:
        unlearned_tr: (N,) raw per-question truth ratios of the unlearned model on the forget set.
        retain_tr: (M,) the same statistic of a model trained on the retain set only.

    Returns:
        ``scipy.stats.ks_2samp(unlearned_tr, retain_tr).pvalue``; high means indistinguishable.
    """
    for name, values in (("unlearned_tr", unlearned_tr), ("retain_tr", retain_tr)):
        if len(values) == 0:
            raise ConfigError(
                f"forget_quality: {name} is empty; it needs one truth ratio per forget question"
            )
    import scipy.stats

    return float(scipy.stats.ks_2samp(np.asarray(unlearned_tr), np.asarray(retain_tr)).pvalue)


LOG_QUALITY_FLOOR = 1e-300  # log10 of a KS p-value that underflowed to 0: -300, not -inf


def forget_distances(
    unlearned_tr: Sequence[float] | np.ndarray, retain_tr: Sequence[float] | np.ndarray
) -> dict[str, float]:
    """Distances between the unlearned and the retain model's forget truth-ratio distributions.

    Candidate selection statistics beside forget quality (the KS p-value), each a function of the same two
    samples of raw truth ratios:

    * ``ks_d``: the two-sample KS statistic D (``scipy.stats.ks_2samp``), the sup distance of the two
      empirical CDFs; forget quality is a decreasing function of it for fixed sample sizes;
    * ``log_quality``: ``log10`` of forget quality (p-values floored at ``LOG_QUALITY_FLOOR``): the same
      order as forget quality on one run, but its replicate mean is not dominated by the rare run near 1;
    * ``w1``: the Wasserstein-1 distance of the **log** truth ratios (``scipy.stats.wasserstein_distance``;
      the log, because raw ratios are heavy-tailed and a single extreme question would dominate);
    * ``cvm``: the two-sample Cramér-von Mises statistic (``scipy.stats.cramervonmises_2samp``), an
      integrated squared CDF distance (rank-based, like D).

    Returns:
        ``{"ks_d", "log_quality", "w1", "cvm"}``; every one but ``log_quality`` is 0 for equal samples.
    """
    for name, values in (("unlearned_tr", unlearned_tr), ("retain_tr", retain_tr)):
        if len(values) < 2:
            raise ConfigError(f"forget_distances: {name} has {len(values)} values; it needs one truth ratio per "
                              "forget question, at least 2")
    import scipy.stats

    a, b = np.asarray(unlearned_tr, dtype=np.float64), np.asarray(retain_tr, dtype=np.float64)
    ks = scipy.stats.ks_2samp(a, b)
    with np.errstate(divide="ignore"):
        la, lb = np.log(np.clip(a, 1e-300, 1e300)), np.log(np.clip(b, 1e-300, 1e300))
    return {"ks_d": float(ks.statistic), "log_quality": float(np.log10(max(float(ks.pvalue), LOG_QUALITY_FLOOR))),
            "w1": float(scipy.stats.wasserstein_distance(la, lb)),
            "cvm": float(scipy.stats.cramervonmises_2samp(a, b).statistic)}


def model_utility(stats: Mapping[str, float]) -> float:
    """Harmonic mean of the nine retain/real_authors/world_facts x prob/rouge/truth_ratio statistics.

    Args:
        stats: metric name -> value; must hold every name in ``names.UTILITY_METRICS`` (others ignored).

    Returns:
        The harmonic mean, 0 if any statistic is 0.
    """
    missing = [k for k in UTILITY_METRICS if k not in stats]
    if missing:
        got = ", ".join(sorted(stats)) or "nothing"
        raise ConfigError(f"model_utility needs {', '.join(missing)}; got {got}")
    values = np.asarray([float(stats[k]) for k in UTILITY_METRICS], dtype=np.float64)
    negative = [k for k, v in zip(UTILITY_METRICS, values) if v < 0]
    if negative:
        raise ConfigError(f"model_utility: {negative[0]}={stats[negative[0]]!r} is negative; valid: [0, 1]")
    if np.any(values == 0):
        return 0.0
    import scipy.stats

    return float(scipy.stats.hmean(values))


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L recall of each prediction against its reference (``rouge_score``, Porter stemmer).

    Args:
        predictions: N generated answers.
        references: N ground-truth answers.

    Returns:
        N recalls in [0, 1].
    """
    if len(predictions) != len(references):
        raise ConfigError(
            f"rouge_l_recall: {len(predictions)} predictions against {len(references)} references"
        )
    from rouge_score import rouge_scorer  # imports nltk: loaded when ROUGE is computed

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].recall for pred, ref in zip(predictions, references)]
