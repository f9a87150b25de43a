"""Hand-computed checks of the TOFU maths (unlearn.benchmarks.tofu.maths, unlearn.metrics.scoring) and the metric table."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

from unlearn.errors import ConfigError, UnknownNameError
from unlearn.benchmarks.tofu import maths, names
from unlearn.metrics.scoring import (
    answer_logprob_stats,
    extraction_strength,
    extraction_strength_batch,
    extraction_strength_masked,
    normalised_prob,
)
from unlearn.benchmarks.tofu.maths import (
    forget_quality,
    model_utility,
    option_probability,
    rouge_l_recall,
    truth_ratio,
    truth_ratio_closer_to_one,
    truth_ratio_true_better,
)


# --- answer log-probabilities ---------------------------------------------------------------------

def naive_logprob_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[list[float], list[int]]:
    sums, counts = [], []
    for b in range(labels.shape[0]):
        logp = torch.log_softmax(logits[b].double(), dim=-1)
        s, n = 0.0, 0
        for t in range(1, labels.shape[1]):
            if labels[b, t] != -100:
                s += float(logp[t - 1, labels[b, t]])
                n += 1
        sums.append(s)
        counts.append(n)
    return sums, counts


def test_logprob_stats_hand_case():
    logits = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 0.0, 0.0], [0.0, 0.0, 0.0], [9.0, 9.0, 9.0]]])
    labels = torch.tensor([[-100, 1, 0, -100]])  # token 1 from position 0, token 0 from position 1
    sum_logp, n = answer_logprob_stats(logits, labels)
    expected = (1 - math.log(1 + math.e + math.e**2)) + (3 - math.log(math.e**3 + 2))
    assert n.tolist() == [2]
    assert sum_logp.dtype == torch.float32
    assert sum_logp.item() == pytest.approx(expected, abs=1e-6)


def test_logprob_stats_match_naive_reference_with_ignored_tokens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g)
    labels = torch.randint(0, 11, (3, 7), generator=g)
    labels[0, :3] = -100  # prompt
    labels[1, 5:] = -100  # padding
    labels[2, :] = -100  # nothing scored
    sum_logp, n = answer_logprob_stats(logits, labels)
    ref_sums, ref_counts = naive_logprob_stats(logits, labels)
    assert n.tolist() == ref_counts
    torch.testing.assert_close(sum_logp.double(), torch.tensor(ref_sums, dtype=torch.float64), atol=1e-5, rtol=0)


def test_logprob_stats_are_fp32_from_bf16_logits():
    logits = torch.randn(2, 5, 7).to(torch.bfloat16)
    labels = torch.tensor([[-100, 1, 2, 3, -100], [-100, -100, 4, 5, 6]])
    sum_logp, _ = answer_logprob_stats(logits, labels)
    ref, _ = naive_logprob_stats(logits.float(), labels)
    assert sum_logp.dtype == torch.float32
    torch.testing.assert_close(sum_logp.double(), torch.tensor(ref, dtype=torch.float64), atol=1e-5, rtol=0)


def test_logprob_stats_reject_mismatched_shapes():
    with pytest.raises(ConfigError, match=r"\(2, 5\)"):
        answer_logprob_stats(torch.zeros(2, 4, 3), torch.zeros(2, 5, dtype=torch.long))


def test_normalised_prob_is_geometric_mean_of_token_probs():
    assert normalised_prob(np.array([-2.0]), np.array([4]))[0] == pytest.approx(math.exp(-0.5))
    probs = torch.tensor([0.5, 0.2, 0.8])
    out = normalised_prob(torch.log(probs).sum()[None], torch.tensor([3]))
    assert out.item() == pytest.approx(float(probs.prod() ** (1 / 3)), rel=1e-6)


# --- truth ratio ----------------------------------------------------------------------------------

def test_truth_ratio_uses_geometric_mean_of_perturbed():
    # perturbed probabilities 0.1 and 0.4 -> geometric mean 0.2; true 0.5 -> R = 0.4
    r = truth_ratio([math.log(0.5)], [[math.log(0.1), math.log(0.4)]])
    assert r[0] == pytest.approx(0.4)


def test_truth_ratio_ragged_and_dense_agree():
    true = [-1.0, -2.0]
    r = truth_ratio(true, [[-2.0, -4.0], [-1.0]])
    np.testing.assert_allclose(r, [math.exp(-2), math.exp(1)])
    dense = truth_ratio(true, np.array([[-2.0, -4.0], [-1.0, -1.0]]))
    np.testing.assert_allclose(dense, r)


def test_truth_ratio_aggregations():
    r = [0.5, 2.0, 1.0]
    assert truth_ratio_closer_to_one(r) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert truth_ratio_true_better(r) == pytest.approx(0.5 / 3)
    assert truth_ratio_closer_to_one([0.0, math.inf]) == 0.0
    assert truth_ratio_true_better([0.0]) == 1.0


def test_truth_ratio_rejects_bad_shapes():
    with pytest.raises(ConfigError, match="2 questions against 1"):
        truth_ratio([0.0, 0.0], [[0.0]])
    with pytest.raises(ConfigError, match=r"perturbed_avg_logp\[1\] is empty"):
        truth_ratio([0.0, 0.0], [[0.0], []])


def test_option_probability():
    np.testing.assert_allclose(option_probability([0.5, 0.2], [[0.25, 0.25], [0.6]]), [0.5, 0.25])


# --- forget quality and model utility -------------------------------------------------------------

def test_forget_quality_is_scipy_ks_pvalue():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=40), rng.uniform(0.2, 1.2, size=40)
    assert forget_quality(a, b) == scipy.stats.ks_2samp(a, b).pvalue
    assert forget_quality(list(a), list(a)) == pytest.approx(1.0)


def test_forget_quality_rejects_empty():
    with pytest.raises(ConfigError, match="retain_tr is empty"):
        forget_quality([0.5], [])


def test_model_utility_harmonic_mean():
    stats = {k: 1.0 for k in names.UTILITY_METRICS}
    stats[names.WORLD_FACTS_ROUGE] = 0.25
    stats[names.FORGET_PROB] = 0.0  # not part of utility
    assert model_utility(stats) == pytest.approx(9 / (8 + 4))
    assert model_utility({k: 0.5 for k in names.UTILITY_METRICS}) == pytest.approx(0.5)


def test_model_utility_zero_and_missing():
    stats = {k: 0.7 for k in names.UTILITY_METRICS}
    stats[names.RETAIN_TRUTH_RATIO] = 0.0
    assert model_utility(stats) == 0.0
    del stats[names.REAL_AUTHORS_PROB]
    with pytest.raises(ConfigError, match="real_authors_prob"):
        model_utility(stats)


# --- extraction strength --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("correct", "expected"),
    [([1, 0, 1, 1], 0.5), ([1, 1, 1, 1], 1.0), ([1, 1, 1, 0], 0.0), ([0, 1, 1, 1], 0.75), ([0], 0.0), ([], 0.0)],
)
def test_extraction_strength_hand_cases(correct, expected):
    assert extraction_strength(torch.tensor(correct, dtype=torch.bool)) == pytest.approx(expected)


def test_extraction_strength_masked_matches_single():
    g = torch.Generator().manual_seed(1)
    correct = torch.rand(6, 9, generator=g) > 0.3
    valid = torch.zeros(6, 9, dtype=torch.bool)
    for b, (start, stop) in enumerate([(2, 9), (0, 4), (3, 6), (5, 9), (0, 9), (1, 2)]):
        valid[b, start:stop] = True
    correct[4] = True
    out = extraction_strength_masked(correct, valid)
    ref = [extraction_strength(correct[b][valid[b]]) for b in range(6)]
    torch.testing.assert_close(out, torch.tensor(ref, dtype=torch.float32))
    assert out[4] == 1.0


def test_extraction_strength_batch_from_hand_logits():
    # Answer tokens 3, 1, 2 after a 2-token prompt; position t predicts token t+1.
    labels = torch.tensor([[-100, -100, 3, 1, 2], [-100, -100, 3, 1, 2]])
    logits = torch.zeros(2, 5, 4)
    for t, tok in [(1, 3), (2, 1), (3, 2)]:
        logits[:, t, tok] = 5.0
    logits[1, 1, 0] = 9.0  # first answer token wrong, the rest right: ES = 2/3
    es = extraction_strength_batch(logits, labels)
    torch.testing.assert_close(es, torch.tensor([1.0, 2 / 3]))


# --- ROUGE ----------------------------------------------------------------------------------------

def test_rouge_l_recall_hand_examples():
    out = rouge_l_recall(
        ["the cat sat", "cats running", "", "Paris is the capital"],
        ["the cat sat on the mat", "cat run", "anything", "Paris"],
    )
    assert out == pytest.approx([0.5, 1.0, 0.0, 1.0])


def test_rouge_l_recall_length_mismatch():
    with pytest.raises(ConfigError, match="2 predictions against 1"):
        rouge_l_recall(["a", "b"], ["a"])


# --- names ----------------------------------------------------------------------------------------

def test_metric_names_and_directions():
    assert len(names.ALL_METRICS) == len(set(names.ALL_METRICS)) == 17 + 4 + 2 + 4  # + 4 distances, privleak, |privleak|, 4 attacks
    assert set(names.TABLE.names) == set(names.ALL_METRICS)
    for split in names.SPLITS:
        for stat in ("prob", "rouge", "truth_ratio"):
            assert names.split_metric(split, stat) in names.ALL_METRICS
    assert names.TABLE.tune_mode(names.FORGET_QUALITY) == "max"
    assert names.TABLE.tune_mode(names.FORGET_ES) == "min"
    assert names.TABLE.optuna_direction(names.MODEL_UTILITY) == "maximize"
    assert names.TABLE.optuna_direction(names.FORGET_ROUGE) == "minimize"
    assert names.TABLE.tune_mode(names.FORGET_LOG_QUALITY) == "max"
    for distance in (names.FORGET_KS_D, names.FORGET_W1, names.FORGET_CVM):
        assert names.TABLE.tune_mode(distance) == "min"


def test_forget_distances_against_hand_computed_values():
    # retain ratios 1..4, unlearned shifted: the empirical CDFs differ by at most 2/4 (between 2 and 3)
    retain = [1.0, 2.0, 3.0, 4.0]
    unlearned = [3.0, 4.0, 5.0, 6.0]
    d = maths.forget_distances(unlearned, retain)
    assert d["ks_d"] == pytest.approx(0.5)
    assert d["log_quality"] == pytest.approx(math.log10(maths.forget_quality(unlearned, retain)))
    # W1 of the log ratios: mean |log(x_(i)) - log(y_(i))| over sorted pairs (equal sizes)
    expected_w1 = sum(abs(math.log(a) - math.log(b)) for a, b in zip(unlearned, retain)) / 4
    assert d["w1"] == pytest.approx(expected_w1)
    # CvM two-sample statistic (Anderson 1962): T = U / (n m (n + m)) - (4 m n - 1) / (6 (m + n)),
    # U = n sum (r_i - i)^2 + m sum (s_j - j)^2 over the pooled ranks r (unlearned) and s (retain)
    pooled = sorted(unlearned + retain)
    def mid_rank(x: float) -> float:  # ties (3 and 4 appear twice): the mean of their ranks
        return sum(i + 1 for i, v in enumerate(pooled) if v == x) / pooled.count(x)

    ranks_u, ranks_r = [mid_rank(x) for x in sorted(unlearned)], [mid_rank(x) for x in sorted(retain)]
    n = m = 4
    u = n * sum((r - (i + 1)) ** 2 for i, r in enumerate(ranks_u)) + m * sum((s - (j + 1)) ** 2
                                                                            for j, s in enumerate(ranks_r))
    assert d["cvm"] == pytest.approx(u / (n * m * (n + m)) - (4 * m * n - 1) / (6 * (m + n)))
    same = maths.forget_distances(retain, retain)
    assert same["ks_d"] == same["w1"] == 0.0 and same["log_quality"] == 0.0
    # a p-value that underflows to 0 is floored, never -inf
    far = maths.forget_distances([1e-200] * 400, [1e200] * 400)
    assert far["log_quality"] >= math.log10(maths.LOG_QUALITY_FLOOR) and math.isfinite(far["w1"])
    with pytest.raises(ConfigError, match="at least 2"):
        maths.forget_distances([1.0], retain)


def test_unknown_metric_name_lists_valid_ones():
    with pytest.raises(UnknownNameError, match="forget_quality"):
        names.TABLE.tune_mode("forget_qualty")
    with pytest.raises(UnknownNameError, match="real_authors_es"):
        names.split_metric("real_authors", "es")
