"""The leaderboard's files: a method whose sweep failed is named with its reason (no Ray, no sweep)."""

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
