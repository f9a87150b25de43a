"""Choosing from a sweep's trials: the best trial (single objective) or the Pareto set."""

from __future__ import annotations

import math
from typing import Any

from sweeps.space import SearchSpace


def _objective_values(space: SearchSpace, row: dict[str, Any]) -> list[float] | None:
    vals = [row["metrics"].get(m) for m in space.metric_names]
    if any(v is None or not isinstance(v, (int, float)) or math.isnan(v) for v in vals):
        return None
    return [v if d == "maximize" else -v for v, d in zip(vals, space.directions)]  # larger is better


def pick_best(space: SearchSpace, trials: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """Best finished trial (single objective) or the Pareto set and its member best on the first objective."""
    done = [t for t in trials if t["status"] == "FINISHED" and t["config"] is not None
            and _objective_values(space, t) is not None]
    if not done:
        return None, []
    scores = {t["trial_id"]: _objective_values(space, t) for t in done}
    pareto = [t for t in done if not any(
        all(a >= b for a, b in zip(scores[o["trial_id"]], scores[t["trial_id"]])) and scores[o["trial_id"]] != scores[t["trial_id"]]
        for o in done)]
    # Ties on the first objective (forget quality moves in coarse steps) go to the better model utility:
    # of two equally forgetful models, the one that kept more is the one to export.
    utility = space.base_config.benchmark.metrics.utility_metric
    best = max(pareto, key=lambda t: (scores[t["trial_id"]][0], _utility(t, utility)))
    return best, pareto if space.is_multi_objective else [best]


def _utility(trial: dict[str, Any], name: str | None) -> float:
    """The trial's value of the benchmark's utility metric (-inf when missing)."""
    value = trial["metrics"].get(name) if name is not None else None
    return value if isinstance(value, (int, float)) and not math.isnan(value) else -math.inf


