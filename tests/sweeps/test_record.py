"""A trial's number of record: aggregates, intervals and feasibility against naive references."""

import math
import statistics

import pytest
from scipy import stats

from sweeps.record import (
    MISSING_VIOLATION,
    Bound,
    ReportedRecord,
    TrialRecord,
    aggregate,
    interval,
    make_record,
    replicate_of_result,
    replicate_result,
    violations_of,
)

FINALS = [{"forget_quality": 0.7, "model_utility": 0.50, "epoch": 3},
          {"forget_quality": 0.4, "model_utility": 0.55, "epoch": 3},
          {"forget_quality": 0.9, "model_utility": 0.45, "epoch": 3}]


def _replicates(finals=FINALS):
    return [{"index": i, "seed": 10 + i, "dir": f"r{i}", "final": f, "best_epoch": None} for i, f in enumerate(finals)]


def test_aggregate_is_the_mean_or_median_per_metric():
    assert aggregate(FINALS, "mean")["forget_quality"] == pytest.approx((0.7 + 0.4 + 0.9) / 3)
    assert aggregate(FINALS, "median")["model_utility"] == 0.50
    assert aggregate([{"a": 1.0, "b": "x"}, {"a": 3.0}], "mean") == {"a": 2.0}  # only metrics every run has


def test_a_diverged_replicate_makes_the_aggregate_nan():
    assert math.isnan(aggregate([{"a": 1.0}, {"a": float("nan")}], "mean")["a"])


def test_t_interval_matches_the_textbook_formula():
    x = [0.7, 0.4, 0.9]
    m, s, n = statistics.mean(x), statistics.stdev(x), len(x)
    half = stats.t.ppf(0.975, n - 1) * s / math.sqrt(n)
    low, high = interval(x, "mean")
    assert (low, high) == pytest.approx((m - half, m + half))


def test_bootstrap_interval_of_the_median_holds_the_median_and_is_deterministic():
    x = [0.2, 0.4, 0.5, 0.9, 0.3]
    low, high = interval(x, "median")
    assert low <= statistics.median(x) <= high and min(x) <= low and high <= max(x)
    assert interval(x, "median") == (low, high)


def test_no_interval_from_one_replicate_and_a_point_from_equal_ones():
    assert interval([0.5], "mean") is None
    assert interval([0.5, 0.5, 0.5], "mean") == (0.5, 0.5)


def test_bounds_follow_optunas_sign_convention():
    at_least = Bound("model_utility", "min", 0.5, "absolute")
    at_most = Bound("forget_rouge", "max", 0.2, "absolute")
    assert at_least.violation({"model_utility": 0.6}) == pytest.approx(-0.1)  # <= 0: satisfied
    assert at_least.violation({"model_utility": 0.4}) == pytest.approx(0.1)
    assert at_most.violation({"forget_rouge": 0.3}) == pytest.approx(0.1)
    assert at_least.violation({}) == MISSING_VIOLATION
    assert at_least.violation({"model_utility": float("nan")}) == MISSING_VIOLATION


def test_record_feasibility_is_judged_on_the_aggregate():
    bound = Bound("model_utility", "min", 0.49, "absolute")
    record = make_record(_replicates(), "mean", [bound], ["forget_quality", "model_utility"])
    assert record.metrics["model_utility"] == pytest.approx(0.5)
    assert record.feasible is True  # replicate 2 alone (0.45) would break it
    assert record.constraints[0]["violation"] == pytest.approx(-0.01)
    assert set(record.intervals) == {"forget_quality", "model_utility"}
    strict = make_record(_replicates(), "mean", [Bound("model_utility", "min", 0.51, "absolute")], [])
    assert strict.feasible is False and strict.intervals == {}
    assert TrialRecord.from_dict(record.to_dict()) == record  # record.json and back


def test_record_travels_through_a_tune_result_and_back():
    bound = Bound("model_utility", "min", 0.6, "absolute")
    record = make_record(_replicates(), "mean", [bound], ["forget_quality"])
    result = record.to_result()
    assert ReportedRecord.of(result) is not None and ReportedRecord.of({"forget_quality": 0.1}) is None
    assert ReportedRecord.of(result).values == {k: v for k, v in record.metrics.items()}
    assert ReportedRecord.of(result).feasible is False
    assert violations_of(result, 1) == [pytest.approx(0.1)]
    assert result["record/forget_quality/low"] < result["record/forget_quality"] < result["record/forget_quality/high"]
    # a trial stopped early reports no record: its own metrics are judged
    assert violations_of({"model_utility": 0.7}, 1, [bound]) == [pytest.approx(-0.1)]


def test_replicate_results_round_trip():
    result = replicate_result(2, 1234, {"forget_quality": 0.3, "method": "satimp"})
    assert replicate_of_result(result) == (2, 1234, {"forget_quality": 0.3})
    assert replicate_of_result({"forget_quality": 0.3}) is None
