"""The statistics of choosing on common seeds, against references written here and synthetic tables
whose answer is known."""

import math
import statistics

import numpy as np
import pytest

from sweeps.racing import FIRST_TEST, eliminated, holm, paired_difference, prob_best, ranked, surely_infeasible
from sweeps.record import Bound


def test_paired_difference_is_the_t_interval_of_the_per_seed_differences():
    values = {"a": {0: 1.0, 1: 2.0, 2: 4.0, 3: 3.5}, "b": {0: 0.5, 1: 1.0, 2: 3.0, 3: 3.5, 9: 10.0}}
    d = paired_difference(values, "a", "b")
    diffs = [0.5, 1.0, 1.0, 0.0]  # seed 9 is not shared
    half = 3.182446305284263 * statistics.stdev(diffs) / math.sqrt(4)  # t(0.975, 3)
    assert d.seeds == 4 and d.mean == pytest.approx(0.625)
    assert (d.low, d.high) == pytest.approx((0.625 - half, 0.625 + half))
    assert paired_difference({"a": {0: 1.0}, "b": {1: 0.0}}, "a", "b").seeds == 0


def test_holm_steps_down_until_the_first_kept_hypothesis():
    # alpha 0.05 over 3: thresholds 0.0167, 0.025, 0.05 in p-value order
    assert holm({"x": 0.01, "y": 0.02, "z": 0.04}) == {"x", "y", "z"}
    assert holm({"x": 0.01, "y": 0.03, "z": 0.04}) == {"x"}  # 0.03 > 0.025 stops the procedure
    assert holm({"x": 0.02, "y": 0.001}) == {"x", "y"}  # 0.001 <= 0.025, then 0.02 <= 0.05
    assert holm({"x": 0.06, "y": 0.001}) == {"y"}


def test_a_clearly_worse_point_is_eliminated_only_once_every_survivor_has_its_first_blocks():
    good = {s: 1.0 + 0.01 * s for s in range(FIRST_TEST)}
    bad = {s: 0.0 + 0.02 * (s % 2) for s in range(FIRST_TEST)}
    close = {s: 1.0 + 0.01 * s - (0.05 if s % 2 else -0.04) for s in range(FIRST_TEST)}
    values = {"good": good, "bad": bad, "close": close}
    assert eliminated(values, ["good", "bad", "close"]) == {"bad"}
    early = {p: {s: v for s, v in vs.items() if s < FIRST_TEST - 1} for p, vs in values.items()}
    assert eliminated(early, ["good", "bad", "close"]) == set()


def test_prob_best_is_near_one_for_a_separated_point_and_shared_between_equals():
    rng = np.random.default_rng(0)
    seeds = range(10)
    separated = {"a": {s: 1.0 + 0.1 * rng.standard_normal() for s in seeds},
                 "b": {s: 0.0 + 0.1 * rng.standard_normal() for s in seeds}}
    assert prob_best(separated)["a"] > 0.99
    shared = rng.standard_normal(10)  # a seed effect common to both: pairing keeps it out of the comparison
    equal = {"a": {s: shared[s] + 0.01 * (s % 2) for s in seeds}, "b": {s: shared[s] + 0.01 * ((s + 1) % 2) for s in seeds}}
    p = prob_best(equal)
    assert p["a"] + p["b"] == pytest.approx(1.0) and 0.2 < p["a"] < 0.8
    assert prob_best({"only": {0: 1.0}}) == {"only": 1.0}


def test_prob_best_of_the_empirical_best_is_calibrated_on_synthetic_tables_with_a_known_answer():
    """Tables drawn around known means (4 points, gaps comparable to the seed sd, 6 seeds each): among the
    tables where the stated probability that the empirical best is best lies in a bin, the share where it
    truly is best lies near the bin's mean statement."""
    rng = np.random.default_rng(1)
    true = np.array([0.0, -0.3, -0.5, -0.6])
    stated, right = [], []
    for t in range(300):
        draws = true[:, None] + rng.standard_normal((4, 6))
        values = {str(i): {s: float(draws[i, s]) for s in range(6)} for i in range(4)}
        best = ranked(values)[0]
        stated.append(prob_best(values, draws=2000, seed=t)[best])
        right.append(best == "0")
    stated, right = np.asarray(stated), np.asarray(right, dtype=float)
    assert 0.3 < right.mean() < 0.95  # the tables are hard enough to test a statement
    for lo, hi in ((0.0, 0.6), (0.6, 0.9), (0.9, 1.01)):
        inside = (stated >= lo) & (stated < hi)
        if inside.sum() >= 30:
            assert abs(right[inside].mean() - stated[inside].mean()) < 0.12, (lo, hi, right[inside].mean(),
                                                                              stated[inside].mean())


def test_a_point_gets_another_seed_only_while_its_upper_bound_reaches_the_incumbent():
    from sweeps.racing import can_still_beat

    values = [0.1, 0.3]  # mean 0.2, t(0.975, 1) = 12.706, sem 0.1: upper end 1.4706
    assert can_still_beat(values, 1.47) and not can_still_beat(values, 1.48)
    assert can_still_beat([0.1], 5.0)  # one value: no interval, it always can
    assert not can_still_beat([0.2, 0.2, 0.2], 0.3) and can_still_beat([0.2, 0.2], 0.2)


def test_a_point_is_surely_infeasible_only_when_its_one_sided_t_bound_breaks_the_constraint():
    from scipy import stats

    at_least = Bound("model_utility", "min", 0.75, "0.9 x target")
    runs = [0.74, 0.745, 0.73]  # mean 0.7383 below the bound
    high = np.mean(runs) + stats.t.ppf(0.95, 2) * np.std(runs, ddof=1) / math.sqrt(3)  # written out: 0.7578
    assert high > 0.75 and not surely_infeasible(runs, at_least)  # its mean breaks it, the test does not
    tight = [0.738, 0.739, 0.737, 0.7385]
    assert surely_infeasible(tight, at_least)
    assert not surely_infeasible([0.76, 0.77], at_least)
    # one run: no interval, its value decides; nothing run: nothing shown; a NaN (diverged run) breaks it
    assert surely_infeasible([0.70], at_least) and not surely_infeasible([0.80], at_least)
    assert not surely_infeasible([], at_least) and surely_infeasible([0.8, math.nan], at_least)
    # an upper bound (metric <= x) mirrors it
    at_most = Bound("privleak", "max", 10.0, "absolute")
    assert surely_infeasible([12.0, 12.5, 12.2], at_most) and not surely_infeasible([9.0, 12.0, 10.5], at_most)
    assert surely_infeasible([0.7, 0.7], at_least) and not surely_infeasible([0.8, 0.8], at_least)  # no spread
