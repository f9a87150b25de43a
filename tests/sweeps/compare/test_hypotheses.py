"""The hypotheses' verdicts: paired comparisons on synthetic leaderboards, and the weights' rank correlation
with the likelihood on synthetic per-token CE (no model, no Ray)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sweeps.compare.hypotheses import FAILS, HOLDS, UNDECIDED, better
from sweeps.compare.leaderboard import Leaderboard, MethodRow
from sweeps.compare.spec import Hypothesis
from sweeps.compare.weights import weight_likelihood_correlation
from unlearn.train.config import load_run_config


def _board(values: dict[str, dict[int, float]], direction: str = "minimize") -> Leaderboard:
    rows = tuple(MethodRow(m, "confirmed", "t", {}, v) for m, v in values.items())
    return Leaderboard("t", "forget_w1", direction, None, ("forget_w1",), rows, "")


@pytest.mark.parametrize("gap, verdict", [(-1.0, HOLDS), (1.0, FAILS), (0.0, UNDECIDED)])
def test_better_is_answered_by_the_paired_interval(gap, verdict):
    rng = np.random.default_rng(0)
    common = rng.standard_normal(8) * 3  # seed effects far larger than the gap: only pairing separates them
    values = {"a": {i: float(common[i] + gap + 0.1 * rng.standard_normal()) for i in range(8)},
              "b": {i: float(common[i] + 0.1 * rng.standard_normal()) for i in range(8)}}
    if gap == 0.0:
        values["a"] = {i: v + 0.3 * rng.standard_normal() for i, v in values["b"].items()}
    v = better(_board(values), Hypothesis("better", "a", "b"))  # lower is better: a lower by 1 beats b
    assert v.verdict == verdict, v.evidence
    assert "over 8 common seeds" in v.evidence


def test_better_is_undecided_without_both_confirmed():
    board = Leaderboard("t", "m", "maximize", None, ("m",), (MethodRow("a", "confirmed", values={0: 1.0, 1: 2.0}),
                                                             MethodRow("b", "not confirmed")), "")
    assert better(board, Hypothesis("better", "a", "b")).verdict == UNDECIDED


def _ces(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    ce = torch.rand(6, 20, generator=g) * 4
    mask = torch.rand(6, 20, generator=g) > 0.2
    return [(ce[i:i + 1] * mask[i:i + 1], mask[i:i + 1]) for i in range(6)]


@pytest.mark.parametrize("overrides, sign", [(["method.weighting=simsat", "method.beta=2.0"], 1),
                                             (["method.weighting=simimp", "method.beta=2.0"], -1),
                                             (["method.weighting=wga", "method.beta=1.0"], 1)])
def test_saturation_weights_rise_with_the_likelihood_and_importance_weights_fall(overrides, sign):
    rho = weight_likelihood_correlation(load_run_config(None, overrides), _ces())
    assert rho * sign > 0.99  # monotone in p at token granularity: a rank correlation of +-1


def test_constant_weights_have_no_correlation():
    assert math.isnan(weight_likelihood_correlation(load_run_config(None, ["method.weighting=uniform"]), _ces()))
