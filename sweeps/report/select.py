"""Choosing from a sweep's trials: the best feasible trial (single objective) or the feasible Pareto set.

Trials are compared by their values of record (``sweeps.record``); a trial that violates a constraint is
never chosen.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from sweeps.layout import CONFIRM_DIR, CONFIRMATION_FILE, read_json
from sweeps.record import Bound
from sweeps.report.trials import TrialRow
from sweeps.space import SearchSpace


def _objective_values(space: SearchSpace, row: TrialRow) -> list[float] | None:
    return space.signed_values(row.metrics)  # larger is better


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
    utility = space.base_config.metrics.utility_metric
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


def load_confirmation(root: Path) -> dict[str, Any] | None:
    """The finished confirmation stage's outcome (``confirm/confirmation.json``, ``sweeps.confirm``), or None."""
    path = root / CONFIRM_DIR / CONFIRMATION_FILE
    return read_json(path, "the confirmation stage's outcome") if path.is_file() else None


@dataclass(frozen=True)
class Choice:
    """What a sweep chose: the best trial (the confirmed best when the confirmation stage ran), the Pareto
    set (several objectives), and the stage's outcome."""

    best: TrialRow | None
    pareto: list[TrialRow]
    confirmation: dict[str, Any] | None = None


def choose(root: Path, space: SearchSpace, trials: Sequence[TrialRow], bounds: Sequence[Bound] = ()) -> Choice:
    """The sweep's choice, one rule for ``report``, ``export-best`` and the sweep's end: the confirmation
    stage's best where it ran and found one, else ``pick_best``."""
    best, pareto = pick_best(space, trials, bounds)
    confirmation = load_confirmation(root) if not space.is_multi_objective else None
    if confirmation is not None and confirmation.get("best") is not None:
        confirmed = next((t for t in trials if t.trial_id == confirmation["best"]), None)
        if confirmed is not None:
            return Choice(confirmed, [confirmed], confirmation)
    return Choice(best, pareto, confirmation)


def within_noise(space: SearchSpace, trials: Sequence[TrialRow], bounds: Sequence[Bound], best: TrialRow) -> list[TrialRow]:
    """The feasible trials the best cannot be told from: their 95 % interval of the objective overlaps the
    best's, or (one seed: no interval) every other feasible trial."""
    m = space.metric_names[0]
    return [t for t in candidates(space, trials, bounds) if t.trial_id != best.trial_id
            and overlap(best, t, m) is not False]


def describe_confirmation(doc: Mapping[str, Any]) -> list[str]:
    """The stage's outcome in a few lines (report, best_config.yaml's head)."""
    if doc.get("best") is None:
        return ["confirmation: no feasible point left"]
    lines = [f"confirmed best: {doc['best']} {doc['metric']} mean "
             f"{next(c['mean'] for c in doc['candidates'] if c['trial_id'] == doc['best']):.4g} over "
             f"{len(next(c['values'] for c in doc['candidates'] if c['trial_id'] == doc['best']))} fresh seeds; "
             f"probability of being the best of the {len(doc['candidates'])} confirmed points "
             f"{doc['prob_best']:.2f} (posterior); stopped: {doc['stopped']}"]
    d = doc.get("difference")
    if d:
        lines.append(f"runner-up: {doc['runner_up']}; paired difference (best - runner-up) {d['mean']:.4g}, 95 % "
                     f"interval [{d['low']:.4g}, {d['high']:.4g}] over {d['seeds']} common seeds")
    for f in doc.get("feasibility", ()):  # stages recorded before stop 37 have none
        iv = f"[{f['interval'][0]:.4g}, {f['interval'][1]:.4g}]" if f["interval"] else "(one seed: no interval)"
        lines.append(f"feasibility: {f['bound']}: confirmed mean {f['mean']:.4g}, 95 % interval {iv} over "
                     f"{f['seeds']} seeds: {f['verdict']}")
    lines.append(f"rule: {doc['rule']}")
    return lines


def choice_notes(space: SearchSpace, trials: Sequence[TrialRow], bounds: Sequence[Bound], choice: Choice) -> list[str]:
    """How sure the choice is, in plain lines: the confirmation stage's outcome, or (without it) the points
    the best is within noise of, by name."""
    if choice.best is None or space.is_multi_objective:
        return []
    if choice.confirmation is not None:
        return describe_confirmation(choice.confirmation)
    close = within_noise(space, trials, bounds, choice.best)
    if not close:
        return [f"no other feasible point is within noise of {choice.best.trial_id} (95 % intervals apart)"]
    how = ("their 95 % intervals overlap its" if choice.best.intervals else "one seed each: nothing separates them")
    return [f"not confirmed: {choice.best.trial_id} is one of the points within noise of each other: "
            + ", ".join(t.trial_id for t in close[:8]) + (" ..." if len(close) > 8 else "")
            + f" ({how}); budget.confirm races the top points on fresh seeds and says how sure"]
