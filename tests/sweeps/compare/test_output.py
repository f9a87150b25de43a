"""The leaderboard's files: a method whose sweep failed is named with its reason, and each confirmed best with
how sure its feasibility is (no Ray, no sweep)."""

from __future__ import annotations

import csv
import io

from sweeps.compare.leaderboard import Leaderboard, MethodRow
from sweeps.compare.output import format_leaderboard, leaderboard_csv


def test_a_failed_method_is_listed_with_why():
    rows = (MethodRow("a", "confirmed", "t", {"optim.lr": 1e-3}, {0: 0.1, 1: 0.2}, rank=1, prob_best=1.0),
            MethodRow("b", "failed", failure="no trial finished (2 trial(s), 2 failed)"))
    board = Leaderboard("t", "forget_w1", "minimize", None, ("forget_w1",), rows, "2 search trials")
    md = format_leaderboard(board)
    assert "| b | no trial finished (2 trial(s), 2 failed) |" in md and "| failed | b |" in md
    rows = list(csv.DictReader(io.StringIO(leaderboard_csv(board))))
    assert [r["failure"] for r in rows] == ["", "no trial finished (2 trial(s), 2 failed)"]


def test_a_confirmed_best_below_a_bound_within_noise_says_so():
    """The verdicts come from the confirmed runs (sweeps.confirm.feasibility): a mean below the bound whose
    one-sided t test does not show it broken stays ranked, with that verdict in both files."""
    from sweeps.confirm import feasibility
    from sweeps.record import Bound

    bound = Bound("model_utility", "min", 0.754, "0.9 x target 0.838")
    runs = {0: {"model_utility": 0.60}, 1: {"model_utility": 0.85}, 2: {"model_utility": 0.65}}  # mean 0.70
    (verdict,) = feasibility(runs, [bound])
    assert verdict["verdict"] == "below the bound within noise"
    row = MethodRow("npo", "confirmed", "t", {}, {0: 0.1, 1: 0.2, 2: 0.3}, rank=1, prob_best=0.99,
                    feasibility=(f"model_utility: {verdict['verdict']}",))
    board = Leaderboard("t", "forget_w1", "minimize", "model_utility", ("forget_w1", "model_utility"), (row,), "3")
    assert "| model_utility: below the bound within noise |" in format_leaderboard(board)
    (line,) = csv.DictReader(io.StringIO(leaderboard_csv(board)))
    assert line["feasibility"] == "model_utility: below the bound within noise"
