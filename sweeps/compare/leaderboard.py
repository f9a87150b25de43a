"""The comparison's leaderboard: one row per method at its confirmed best, read from the methods' sweep
directories (no Ray). Ranked by the shared objective on the confirmation runs, which every method ran on the
same seeds (``confirm_seed``): each method's probability of being best (``racing.prob_best``) and its paired
difference to the winner with its 95 % interval (``racing.paired_difference``). Beside it each method's
untuned row (its default setting, the search's first point, on the search's seeds) and the runs spent.

A method whose sweep confirmed nothing (fewer than 2 feasible points, or no ``budget.confirm``) is listed
with its search best, marked ``not confirmed``, and left out of the ranking; so is a method whose sweep's
driver failed (``failed``, with the reason its driver gave: ``compare.json``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sweeps.compare.spec import CompareSpec
from sweeps.confirm import feasibility, load_candidates, load_finals
from sweeps.racing import PairedDifference, paired_difference, prob_best
from sweeps.record import interval
from sweeps.report.select import choose, is_feasible
from sweeps.report.trials import TrialRow, collect_trials, load_bounds
from sweeps.space import SearchSpace, load_sweep_space

Estimate = tuple[float, float | None, float | None]  # mean, 95 % interval low, high (None: fewer than 2 runs)


@dataclass(frozen=True)
class MethodRow:
    """A method at its confirmed best. ``values``: the objective by confirmation index (raw units);
    ``metrics``: every reported metric's mean and interval over those runs."""

    method: str
    status: str  # confirmed | not confirmed | no feasible trial | no result
    trial_id: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    values: dict[int, float] = field(default_factory=dict)
    metrics: dict[str, Estimate] = field(default_factory=dict)
    search_runs: int = 0
    confirm_runs: int = 0
    untuned: dict[str, Any] | None = None  # params, metrics (search record) of the default setting
    rank: int | None = None
    prob_best: float | None = None
    difference: PairedDifference | None = None  # winner minus this method, raw units (None: the winner)
    front: tuple[tuple[float, float], ...] = ()  # feasible search trials' (objective, utility)
    failure: str | None = None  # why its sweep's driver failed (``compare.json``); such a row is not ranked
    # how sure its confirmed best's feasibility is, per constraint (``sweeps.confirm.feasibility``'s verdicts):
    # a method whose mean breaks a bound within noise stays ranked, and says so
    feasibility: tuple[str, ...] = ()


@dataclass(frozen=True)
class Leaderboard:
    name: str
    metric: str
    direction: str
    utility: str | None
    metrics: tuple[str, ...]
    rows: tuple[MethodRow, ...]  # ranked rows first, then the unranked ones
    budget: str

    def row(self, method: str) -> MethodRow:
        return next(r for r in self.rows if r.method == method)


def rank_methods(values: Mapping[str, Mapping[int, float]], direction: str, *,
                 seed: int = 0) -> dict[str, tuple[int, float, PairedDifference | None]]:
    """Rank methods by their mean over common seeds (``values``: method -> seed index -> objective, raw).

    Returns method -> (rank from 1, probability of being best, winner - method paired difference; None for
    the winner). Pure: the synthetic tests call it with a known winner."""
    sign = 1.0 if direction == "maximize" else -1.0
    signed = {m: {i: sign * v for i, v in vs.items()} for m, vs in values.items() if vs}
    if not signed:
        return {}
    probs = prob_best(signed, seed=seed)
    order = sorted(signed, key=lambda m: -sum(signed[m].values()) / len(signed[m]))
    winner = order[0]
    return {m: (i + 1, probs.get(m, 0.0), None if m == winner else paired_difference(values, winner, m))
            for i, m in enumerate(order)}


def _estimate(xs: Sequence[float]) -> Estimate:
    xs = [float(x) for x in xs if isinstance(x, (int, float)) and not math.isnan(float(x))]
    if not xs:
        return (math.nan, None, None)
    iv = interval(xs, "mean")
    return (sum(xs) / len(xs), *(iv if iv else (None, None)))


def _untuned(space: SearchSpace, trials: Sequence[TrialRow], default: Mapping[str, Any] | None,
             metrics: Sequence[str]) -> dict[str, Any] | None:
    if default is None:
        return None
    for t in trials:
        if t.status == "FINISHED" and all(t.params.get(k) == v for k, v in default.items()):
            return {"trial_id": t.trial_id, "params": dict(default), "seeds": len(t.seeds),
                    "metrics": {m: (t.metrics.get(m), *t.intervals.get(m, (None, None))) for m in metrics}}
    return {"trial_id": None, "params": dict(default), "seeds": 0, "metrics": {}}


def _front(space: SearchSpace, trials: Sequence[TrialRow], bounds, utility: str | None) -> tuple[tuple[float, float], ...]:
    metric = space.metric_names[0]
    return tuple((float(t.metrics[metric]), float(t.metrics[utility])) for t in trials
                 if utility and t.status == "FINISHED" and is_feasible(t, bounds)
                 and isinstance(t.metrics.get(metric), (int, float)) and isinstance(t.metrics.get(utility), (int, float)))


def method_row(name: str, root: Path, metrics: Sequence[str], default: Mapping[str, Any] | None) -> MethodRow:
    """A method's row from its sweep directory (confirmed best, or its search best unconfirmed)."""
    if not (root / "space.yaml").is_file():
        return MethodRow(name, "no result")
    space = load_sweep_space(root)
    trials, bounds = collect_trials(root), load_bounds(root)
    search_runs = sum(len(t.seeds) for t in trials if t.status in ("FINISHED", "DAMAGED", "FAILED"))
    utility = space.base_config.metrics.utility_metric
    common = dict(untuned=_untuned(space, trials, default, metrics), search_runs=search_runs,
                  front=_front(space, trials, bounds, utility))
    choice = choose(root, space, trials, bounds)
    candidates = load_candidates(root) or []
    finals = load_finals(root, candidates) if candidates else {}
    confirm_runs = sum(len(v) for v in finals.values())
    best = choice.best
    if best is None:  # trials finished, none feasible (or none finished)
        status = "no feasible trial" if any(t.status == "FINISHED" for t in trials) else "no result"
        return MethodRow(name, status, confirm_runs=confirm_runs, **common)
    runs = finals.get(best.trial_id) if choice.confirmation and choice.confirmation.get("best") == best.trial_id else None
    if not runs:
        est = {m: (best.metrics.get(m), *best.intervals.get(m, (None, None))) for m in metrics}
        return MethodRow(name, "not confirmed", best.trial_id, dict(best.params), {}, est, confirm_runs=confirm_runs,
                         **common)
    objective = space.metric_names[0]
    values = {i: float(f[objective]) for i, f in runs.items() if isinstance(f.get(objective), (int, float))}
    est = {m: _estimate([f.get(m, math.nan) for f in runs.values()]) for m in metrics}
    verdicts = tuple(f"{v['metric']}: {v['verdict']}" for v in feasibility(runs, bounds))
    return MethodRow(name, "confirmed", best.trial_id, dict(best.params), values, est, confirm_runs=confirm_runs,
                     feasibility=verdicts, **common)


def leaderboard_metrics(space: SearchSpace) -> tuple[str, ...]:
    """The objective, then every metric the benchmark reports (attack variants when the config enables
    them), then the constrained ones; each once."""
    from unlearn.attacks import attack_prefixes

    cfg = space.base_config
    shown = list(cfg.metrics.shown)
    attacks = [p + m for p in attack_prefixes(cfg.eval.quant, cfg.eval.relearn) for m in shown]
    return tuple(dict.fromkeys([space.metric_names[0], *shown, *attacks, *(c.metric for c in space.constraints)]))


def build_leaderboard(spec: CompareSpec, root: Path, methods_dir: str = "methods",
                      failed: Mapping[str, str] | None = None) -> Leaderboard:
    """``failed``: method -> why its sweep failed (its row says so, and is not ranked)."""
    first = spec.methods[0].space
    metrics = leaderboard_metrics(first)
    failed = failed or {}
    rows = [method_row(m.name, root / methods_dir / m.name, metrics, m.default) for m in spec.methods]
    rows = [replace(r, status="failed", failure=failed[r.method]) if r.method in failed else r for r in rows]
    ranks = rank_methods({r.method: r.values for r in rows if r.status == "confirmed"}, spec.direction,
                         seed=first.budget.seed)
    ranked = [replace(r, rank=ranks[r.method][0], prob_best=ranks[r.method][1], difference=ranks[r.method][2])
              if r.method in ranks else r for r in rows]
    ranked.sort(key=lambda r: (r.rank is None, r.rank or 0))
    b = first.budget
    budget = (f"{b.num_samples} search trials x {b.replicates} replicate(s) per method"
              + (f", confirmation: top {b.confirm.top} raced on at most {b.confirm.runs} runs on common fresh seeds"
                 if b.confirm else ", no confirmation stage"))
    return Leaderboard(spec.name, spec.metric, spec.direction, first.base_config.metrics.utility_metric, metrics,
                       tuple(ranked), budget)


def load_leaderboard(root: str | Path) -> Leaderboard:
    """A comparison directory's leaderboard, rebuilt from its methods' directories."""
    from sweeps.compare.run import METHODS_DIR, load_compare_dir

    spec, doc = load_compare_dir(root)
    return build_leaderboard(spec, Path(root).expanduser().resolve(), METHODS_DIR, failures(doc))


def failures(doc: Mapping[str, Any]) -> dict[str, str]:
    """Method -> why its sweep failed, from a comparison record (``compare.json``'s ``done``)."""
    return {m: str(v).removeprefix("failed: ") for m, v in (doc.get("done") or {}).items() if v != "finished"}
