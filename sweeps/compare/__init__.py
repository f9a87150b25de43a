"""Comparing unlearning methods at equal tuning (``unlearn-sweep compare``): a spec (``spec``) names the
methods, one shared objective, constraints and budget; each method is an ordinary sweep with the
confirmation stage (``run``), the methods side by side on one cluster, each its own driver process
(``pool``, ``driver``); the leaderboard ranks the methods' confirmed bests on common confirmation seeds
(``leaderboard``)."""

from sweeps.compare.leaderboard import Leaderboard, MethodRow, build_leaderboard, load_leaderboard, rank_methods
from sweeps.compare.run import CompareResult, resume_or_run_compare, run_compare
from sweeps.compare.spec import CompareSpec, MethodEntry, compare_from_dict, load_compare

__all__ = ["CompareResult", "CompareSpec", "Leaderboard", "MethodEntry", "MethodRow", "build_leaderboard",
           "compare_from_dict", "load_compare", "load_leaderboard", "rank_methods", "resume_or_run_compare",
           "run_compare"]
