"""bench.selection_accuracy's simulator and signal-to-noise figures on synthetic tables whose answer is known."""

import math

import numpy as np
import pytest

from bench.selection_accuracy import best_shares, calibration, score_export, simulate_seed, summarise
from bench.selection_sim import Outcome, SimConfig, constrained_allocation, make_problem, ocba_allocation
from bench.selection_table import Grid, SeedSet, block_means, pooled_log_p, variance_ratios
from sweeps.record import Bound

BOUND = Bound("model_utility", "min", 0.5, "test")


def synthetic_grid(seeds: int, rng: np.random.Generator) -> Grid:
    """A 2 x 2 grid: point 3 is best (1.0 against 0.0, noise 0.05); point 2 scores higher still but its
    utility (0.0) breaks the bound, so it must never be exported."""
    mean = np.asarray([0.0, 0.0, 2.0, 1.0])[:, None]
    utility = np.asarray([1.0, 1.0, 0.0, 1.0])[:, None]

    def seed_set(first: int) -> SeedSet:
        noise = rng.normal(0.0, 0.05, (4, seeds))
        values = {"forget_quality": mean + noise, "forget_log_quality": mean + noise,
                  "model_utility": utility + 0.01 * noise}
        return SeedSet(tuple(range(first, first + seeds)), values, None)

    return Grid(("1,0", "1,1", "2,0", "2,1"), (1.0, 2.0), (0.0, 1.0), seed_set(0), seed_set(5000), None, {}, {})


def test_the_simulated_sweeps_export_a_clearly_best_point_and_never_an_infeasible_one():
    problem = make_problem(synthetic_grid(10, np.random.default_rng(0)), "forget_log_quality", BOUND, True)
    assert problem.best == 3 and list(problem.truth_feasible) == [True, True, False, True]
    cfg = SimConfig((48,))  # 48 runs on 4 points: every setting's search covers the grid
    outcomes = [o for seed in range(5) for o in simulate_seed(problem, cfg, seed)]
    rows = {r["setting"]: r for r in summarise(problem, outcomes)}
    assert set(rows) == set("abcdefghijkl")
    for setting, row in rows.items():
        assert row["infeasible_share"] == 0.0 and row["best_share"] >= 0.8, setting
        assert row["mean_runs"] <= 48, setting
    assert rows["c"]["mean_runs"] == 48 and rows["d"]["calibration"]["mean_stated"] >= 0.8
    assert rows["i"]["mean_runs"] == 48 and rows["l"]["calibration"]["mean_stated"] >= 0.8


def test_an_export_is_scored_against_the_truth_best_and_the_bound():
    problem = make_problem(synthetic_grid(4, np.random.default_rng(1)), "forget_quality", BOUND, True)
    assert score_export(problem, 3)["best"] == 1.0 and score_export(problem, 3)["regret"] == 0.0
    worse = score_export(problem, 0)
    assert worse["best"] == 0.0 and worse["within_0.05"] == 0.0 and worse["regret"] == pytest.approx(1.0, abs=0.1)
    assert score_export(problem, 2)["infeasible"] == 1.0 and score_export(problem, 2)["within_0.05"] == 0.0
    assert score_export(problem, -1)["no_export"] == 1.0


def test_variance_ratios_equal_the_hand_computed_figures():
    x = np.asarray([[0.0, 1.0, 2.0], [2.0, 2.0, 5.0], [4.0, 6.0, 5.0]])
    v = variance_ratios(x)
    # point means 1, 3, 5 (variance 4); within variances 1, 3, 1 (mean 5/3); MSB = 3 x 4 = 12
    assert v["snr"] == pytest.approx(4 / (5 / 3))
    assert v["icc"] == pytest.approx((12 - 5 / 3) / (12 + 2 * 5 / 3))
    # seed means 2, 3, 4 removed: rows [-2,-2,-2], [0,-1,1], [2,3,1]: within variances 0, 1, 1; SS_res 4 over 2 x 2
    assert v["snr_two_way"] == pytest.approx(4 / (2 / 3))
    assert v["icc_two_way"] == pytest.approx((12 - 1) / (12 + 2 * 1))
    # correlations across seeds: rows 0-1 3 / sqrt(12), rows 0-2 1/2, rows 1-2 0
    assert v["mean_correlation"] == pytest.approx((3 / math.sqrt(12) + 0.5 + 0.0) / 3)


def test_blocks_of_seeds_are_averaged_and_pooled():
    x = np.arange(14, dtype=float).reshape(2, 7)
    assert block_means(x, 3).tolist() == [[1.0, 4.0], [8.0, 11.0]]  # the 7th seed is left out
    reference = np.linspace(0.5, 2.0, 10)
    ratios = np.broadcast_to(reference, (2, 3, 10))  # every run's ratios are the retain model's
    assert pooled_log_p(ratios, reference, 3).tolist() == [[0.0], [0.0]]


def test_ocba_gives_the_close_rivals_more_than_the_hopeless():
    share = ocba_allocation(np.asarray([1.0, 0.9, 0.0]), np.asarray([0.1, 0.1, 0.1]), 100)
    assert share.sum() == pytest.approx(100) and share[1] > share[2] and share[0] > share[2]


def test_the_constrained_allocation_spends_on_what_is_close_to_the_best_or_to_the_bound():
    means, sd = np.asarray([1.0, 0.9, 2.0, 2.0, 0.0]), np.full(5, 0.1)
    margin = np.asarray([0.05, 0.05, -0.01, -0.5, 0.05])  # 2 and 3 score above the best but look infeasible
    share = constrained_allocation(means, sd, margin, np.full(5, 0.02), 100)
    assert share.sum() == pytest.approx(100)
    assert share[2] > share[3]  # barely infeasible needs more runs to rule out than clearly infeasible
    assert share[1] > share[4]  # a close rival more than a hopeless one


def test_the_bootstrap_finds_a_clear_best_always_and_splits_a_tie():
    rng = np.random.default_rng(2)
    quality = np.asarray([[1.0], [0.0], [0.5], [1.0]]) + rng.normal(0.0, 0.01, (4, 12))
    utility = np.asarray([[1.0], [1.0], [1.0], [0.0]]).repeat(12, axis=1)  # point 3 ties with 0, infeasible
    assert best_shares(quality, utility, BOUND, resamples=200) == {0: 1.0}
    quality[2] = quality[0] + rng.normal(0.0, 0.01, 12)  # now 0 and 2 tie: each is best in about half
    shares = best_shares(quality, utility, BOUND, resamples=400)
    assert set(shares) == {0, 2} and 0.2 < shares[0] < 0.8


def test_calibration_compares_the_stated_probability_with_the_share_right():
    group = [Outcome("d", 48, 3 if i < 9 else 0, 48, 8, stated=0.97, in_race=1.0) for i in range(10)]
    cal = calibration(group, best=3)
    assert cal["mean_stated"] == pytest.approx(0.97) and cal["right_share"] == pytest.approx(0.9)
    assert cal["bins"][-1]["sweeps"] == 10 and cal["overall_gap"] == pytest.approx(0.07)
