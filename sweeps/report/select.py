"""Choosing from a sweep's trials: the best feasible trial (single objective) or the feasible Pareto set.

Trials are compared by their values of record (``sweeps.record``); a trial that violates a constraint is
never chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from sweeps.record import Bound
from sweeps.report.trials import TrialRow
from sweeps.space import SearchSpace


def _objective_values(space: SearchSpace, row: TrialRow) -> list[float] | None:
    vals = [row.metrics.get(m) for m in space.metric_names]
    if any(v is None or not isinstance(v, (int, float)) or math.isnan(v) for v in vals):
        return None
    return [v if d == "maximize" else -v for v, d in zip(vals, space.directions)]  # larger is better


def is_feasible(trial: TrialRow, bounds: Sequence[Bound]) -> bool:
    """The record's feasibility; for a trial without a record (an earlier version's), its metrics against
    ``bounds``."""
    if trial.feasible is not None:
        return trial.feasible
    return all(b.violation(trial.metrics) <= 0 for b in bounds)


def candidates(space: SearchSpace, trials: Sequence[TrialRow], bounds: Sequence[Bound] = ()) -> list[TrialRow]:
    """Finished, feasible trials with every objective, best first (first objective, then utility)."""
    done = [t for t in trials if t.status == "FINISHED" and t.config is not None
            and _objective_values(space, t) is not None and is_feasible(t, bounds)]
    utility = space.base_config.benchmark.metrics.utility_metric
    # Ties on the first objective (forget quality moves in coarse steps) go to the better model utility:
    # of two equally forgetful models, the one that kept more is the one to export.
    return sorted(done, key=lambda t: (_objective_values(space, t)[0], _utility(t, utility)), reverse=True)


def pick_best(space: SearchSpace, trials: Sequence[TrialRow],
              bounds: Sequence[Bound] = ()) -> tuple[TrialRow | None, list[TrialRow]]:
    """Best feasible finished trial (single objective), or the feasible Pareto set and its member best on
    the first objective."""
    done = candidates(space, trials, bounds)
    if not done:
        return None, []
    scores = {t.trial_id: _objective_values(space, t) for t in done}
    pareto = [t for t in done if not any(
        all(a >= b for a, b in zip(scores[o.trial_id], scores[t.trial_id])) and scores[o.trial_id] != scores[t.trial_id]
        for o in done)]
    best = pareto[0]  # ``done`` is sorted best first
    return best, pareto if space.is_multi_objective else [best]


def _utility(trial: TrialRow, name: str | None) -> float:
    """The trial's value of the benchmark's utility metric (-inf when missing)."""
    value = trial.metrics.get(name) if name is not None else None
    return value if isinstance(value, (int, float)) and not math.isnan(value) else -math.inf


def overlap(a: TrialRow, b: TrialRow, metric: str) -> bool | None:
    """Whether the 95 % intervals of two trials' ``metric`` overlap (None: one has no interval)."""
    ia, ib = a.intervals.get(metric), b.intervals.get(metric)
    if not ia or not ib:
        return None
    return ia[0] <= ib[1] and ib[0] <= ia[1]
