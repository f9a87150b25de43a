"""The confirmation stage (``budget.confirm: {top: k, runs: N}``): after the search, the top k feasible
points are raced on fresh common seeds no search trial used, until the best is separated or N runs are
spent; the confirmed best is what the sweep exports.

The race is F-Race with irace's paired t-test and Holm's correction (``sweeps.racing``, which cites
them): round c runs every surviving point on confirmation seed c (``sweeps.space.confirm_seed``: the
same for every point); from round ``FIRST_TEST`` on, survivors significantly worse than the best are
eliminated, and so is a survivor whose confirmed runs break a constraint by a one-sided 95 % t test
(``racing.surely_infeasible``: a point whose true mean sits on the bound would be dropped by its mean
alone half of the time, and the best points of a constrained sweep sit there). The race stops when one point
is left, when the best's posterior probability of being best (``racing.prob_best``) reaches 0.95, or when
the runs are spent (a last round that does not fit the budget goes to the survivors with the best means).

Every run is a Ray Tune trial (``sweeps.trial.run_confirmation``), an MLflow child of the sweep tagged
``unlearn.stage: confirmation``, in ``confirm/<trial id>/<c>/``. The stage keeps no state besides those
runs and ``confirm/candidates.json``: its decisions are replayed from the runs' results, so a driver
killed mid-stage resumes where it stopped (a run in progress resumes from its checkpoint).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.layout import (
    CANDIDATES_FILE,
    CONFIRM_DIR,
    CONFIRMATION_FILE,
    SweepSettings,
    read_json,
    write_json_atomic,
)
from sweeps.racing import FIRST_TEST, eliminated, paired_difference, prob_best, surely_infeasible
from sweeps.record import Bound
from sweeps.report.select import candidates as ranked_candidates
from sweeps.report.trials import TrialRow
from sweeps.results import finished_results
from sweeps.space import SearchSpace, confirm_seed
from sweeps.trial import ConfirmJob, signed_objective

CONFIDENCE = 0.95
RULE = ("F-Race (Birattari et al. 2002) with irace's paired t-test and Holm correction (t.holm; López-Ibáñez et al. "
        "2016) on fresh common seeds; probability of being best: posterior of the means (normal noise, pooled "
        "variance, flat priors)")


@dataclass(frozen=True)
class Candidate:
    """A point the stage races: the search trial that found it and its parameters."""

    trial_id: str
    params: dict[str, Any]


@dataclass(frozen=True)
class RaceState:
    """The race replayed from its runs: every candidate's finals by confirmation index, who survives, who
    was eliminated after which round and why, and whether (and why) the race is over."""

    candidates: tuple[Candidate, ...]
    finals: dict[str, dict[int, dict[str, Any]]]
    survivors: tuple[str, ...]
    out: dict[str, str] = field(default_factory=dict)  # trial id -> why it left the race
    stopped: str | None = None
    runs: int = 0
    infeasible: frozenset[str] = frozenset()  # those of ``out`` whose confirmed runs break a bound


def select_candidates(space: SearchSpace, trials: Sequence[TrialRow], bounds: Sequence[Bound]) -> list[Candidate]:
    """The ``confirm.top`` best feasible finished trials of distinct points, best first."""
    top = space.budget.confirm.top
    out: list[Candidate] = []
    seen: set[str] = set()
    for t in ranked_candidates(space, trials, bounds):
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out.append(Candidate(t.trial_id, dict(t.params)))
        if len(out) == top:
            break
    return out


def _signed(space: SearchSpace, final: Mapping[str, Any]) -> float:
    v = signed_objective(space, dict(final))
    return -math.inf if v is None else v  # a diverged run is the worst value, never averaged away


def values_of(space: SearchSpace, state: RaceState, upto: int | None = None,
              among: Sequence[str] | None = None) -> dict[str, dict[int, float]]:
    """Objective values (higher is better) by candidate and confirmation index (indices below ``upto``)."""
    among = among if among is not None else [c.trial_id for c in state.candidates]
    return {t: {i: _signed(space, f) for i, f in state.finals[t].items() if upto is None or i < upto}
            for t in among}


def _values(finals: Mapping[int, Mapping[str, Any]], metric: str, upto: int | None = None) -> list[float]:
    """``metric`` of the runs below index ``upto`` (a run that did not report it: NaN, i.e. breaks a bound)."""
    xs = [f.get(metric) for i, f in finals.items() if upto is None or i < upto]
    return [float(x) if isinstance(x, (int, float)) else math.nan for x in xs]


def _mean(finals: Mapping[int, Mapping[str, Any]], metric: str, upto: int | None = None) -> float:
    xs = [x for x in _values(finals, metric, upto) if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else math.nan


def replay(space: SearchSpace, candidates: Sequence[Candidate], finals: dict[str, dict[int, dict[str, Any]]],
           bounds: Sequence[Bound]) -> RaceState:
    """The race's decisions from the runs so far (deterministic: a resumed stage decides the same)."""
    budget = space.budget.confirm.runs
    state = RaceState(tuple(candidates), finals, tuple(c.trial_id for c in candidates))
    survivors = [c.trial_id for c in candidates]
    out: dict[str, str] = {}
    infeasible: set[str] = set()
    runs = sum(len(v) for v in finals.values())
    k = FIRST_TEST
    while len(survivors) > 1 and min(len(finals[t]) for t in survivors) >= k:  # every round complete so far
        for t in list(survivors):
            broken = [b.describe() for b in bounds if surely_infeasible(_values(finals[t], b.metric, k), b)]
            if broken and len(survivors) > 1:
                survivors.remove(t)
                infeasible.add(t)
                out[t] = (f"infeasible after {k} seeds: its confirmed runs break {'; '.join(broken)} "
                          f"(one-sided 95 % t test)")
        for t in eliminated(values_of(space, state, k, survivors), survivors):
            survivors.remove(t)
            out[t] = f"eliminated after {k} seeds (paired t-test vs the best, Holm, 5 %)"
        k += 1
    stopped = None
    complete = min((len(finals[t]) for t in survivors), default=0)
    if len(survivors) <= 1:
        stopped = "one point left"
    elif complete >= FIRST_TEST and _best_probability(space, state, survivors, out, infeasible) >= CONFIDENCE:
        stopped = f"the best separated at {CONFIDENCE:.0%}"
    elif runs >= budget:
        stopped = f"the runs are spent ({runs} of {budget})"
    return RaceState(tuple(candidates), finals, tuple(survivors), out, stopped, runs, frozenset(infeasible))


def _feasible_ids(state: RaceState) -> list[str]:
    return [c.trial_id for c in state.candidates if c.trial_id not in state.infeasible and state.finals[c.trial_id]]


def _best_probability(space: SearchSpace, state: RaceState, survivors: Sequence[str], out: Mapping[str, str],
                      infeasible: set[str]) -> float:
    racing = RaceState(state.candidates, state.finals, tuple(survivors), dict(out), infeasible=frozenset(infeasible))
    probs = prob_best(values_of(space, racing, among=_feasible_ids(racing)), seed=space.budget.seed)
    best = max(survivors, key=lambda t: _mean_signed(space, racing, t))
    return probs.get(best, 0.0)


def _mean_signed(space: SearchSpace, state: RaceState, t: str) -> float:
    vals = list(values_of(space, state, among=[t])[t].values())
    return sum(vals) / len(vals) if vals else -math.inf


def next_jobs(space: SearchSpace, state: RaceState) -> list[ConfirmJob]:
    """The next round's runs: every survivor on the next confirmation seed it lacks; a round that does not
    fit the budget goes to the survivors with the best means."""
    if state.stopped is not None:
        return []
    index = min(len(state.finals[t]) for t in state.survivors)
    params = {c.trial_id: c.params for c in state.candidates}
    todo = sorted((t for t in state.survivors if index not in state.finals[t]),
                  key=lambda t: -_mean_signed(space, state, t))
    todo = todo[:max(0, space.budget.confirm.runs - state.runs)]
    return [ConfirmJob(t, params[t], index, confirm_seed(space, index)) for t in todo]


def load_finals(root: Path, candidates: Sequence[Candidate]) -> dict[str, dict[int, dict[str, Any]]]:
    """Each candidate's finished confirmation runs' final metrics, by confirmation index."""
    out: dict[str, dict[int, dict[str, Any]]] = {}
    for c in candidates:
        runs = {}
        base = root / CONFIRM_DIR / c.trial_id
        for d in sorted(base.iterdir()) if base.is_dir() else []:
            if d.name.isdigit() and (done := finished_results(d)) is not None:
                runs[int(d.name)] = done["final"]
        out[c.trial_id] = runs
    return out


def load_candidates(root: Path) -> list[Candidate] | None:
    path = root / CONFIRM_DIR / CANDIDATES_FILE
    if not path.is_file():
        return None
    doc = read_json(path, "the confirmation candidates")
    return [Candidate(str(c["trial_id"]), dict(c["params"])) for c in doc["candidates"]]


def feasibility(finals: Mapping[int, Mapping[str, Any]], bounds: Sequence[Bound]) -> list[dict[str, Any]]:
    """How sure a point's feasibility is, per constraint: its confirmed runs' mean with a 95 % t interval
    (``sweeps.record.interval``) and a verdict: ``shown feasible`` (the interval clears the bound),
    ``feasible within noise`` (the mean does, the interval holds the bound), ``below the bound within noise``
    (the mean breaks it, the one-sided t test does not show it broken) or ``shown infeasible``."""
    from sweeps.record import interval

    out = []
    for b in bounds:
        xs = _values(finals, b.metric)
        iv = interval(xs, "mean")
        mean = _mean(finals, b.metric)
        if surely_infeasible(xs, b):
            verdict = "shown infeasible"
        elif b.violation({b.metric: mean}) > 0:
            verdict = "below the bound within noise"
        elif iv is not None and all(b.violation({b.metric: x}) <= 0 for x in iv):
            verdict = "shown feasible"
        else:
            verdict = "feasible within noise"
        out.append({"bound": b.describe(), "metric": b.metric, "mean": mean, "interval": list(iv) if iv else None,
                    "seeds": len(xs), "verdict": verdict})
    return out


def summary(space: SearchSpace, state: RaceState, bounds: Sequence[Bound] = ()) -> dict[str, Any]:
    """``confirmation.json``: the race's outcome (the confirmed best, its probability of being best of the
    confirmed points, the runner-up and the paired difference of the objective with its 95 % interval, and
    how sure the best's feasibility is under each of ``bounds``)."""
    metric = space.metric_names[0]
    feasible = _feasible_ids(state)
    order = sorted(feasible, key=lambda t: (t in state.survivors, _mean_signed(space, state, t)), reverse=True)
    probs = prob_best(values_of(space, state, among=feasible), seed=space.budget.seed) if feasible else {}
    best = order[0] if order else None
    runner = order[1] if len(order) > 1 else None
    raw = {t: {i: float(f[metric]) for i, f in state.finals[t].items() if isinstance(f.get(metric), (int, float))}
           for t in feasible}
    diff = paired_difference(raw, best, runner) if best and runner else None
    params = {c.trial_id: c.params for c in state.candidates}
    # beside the objective: the report's other metrics (forget quality next to a distance) and the constrained ones
    shown = [m for m in dict.fromkeys([*space.base_config.metrics.shown, *(c.metric for c in space.constraints)])
             if m != metric]
    return {
        "rule": RULE, "metric": metric, "direction": space.directions[0], "runs": state.runs,
        "budget": space.budget.confirm.runs, "stopped": state.stopped, "best": best, "runner_up": runner,
        "prob_best": probs.get(best) if best else None, "difference": diff.to_dict() if diff else None,
        "feasibility": feasibility(state.finals[best], bounds) if best else [],
        "candidates": [{"trial_id": c.trial_id, "params": params[c.trial_id],
                        "seeds": {str(i): confirm_seed(space, i) for i in sorted(state.finals[c.trial_id])},
                        "values": {str(i): state.finals[c.trial_id][i].get(metric)
                                   for i in sorted(state.finals[c.trial_id])},
                        "mean": _mean(state.finals[c.trial_id], metric),
                        "means": {m: _mean(state.finals[c.trial_id], m) for m in shown},
                        "prob_best": probs.get(c.trial_id, 0.0), "survivor": c.trial_id in state.survivors,
                        "out": state.out.get(c.trial_id)} for c in state.candidates],
    }


def run_stage(space: SearchSpace, settings: SweepSettings, trials: Sequence[TrialRow], bounds: tuple[Bound, ...],
              run_round, log=print) -> dict[str, Any] | None:
    """Race the candidates to the end (resuming the runs already on disk); ``run_round(jobs, name)`` runs
    a round's jobs as Tune trials. Returns ``confirmation.json``'s data (None: fewer than 2 feasible points)."""
    root = settings.root
    candidates = load_candidates(root)
    if candidates is None:
        candidates = select_candidates(space, trials, bounds)
        if len(candidates) < 2:
            log(f"confirmation: {len(candidates)} feasible point(s); nothing to race")
            return None
        write_json_atomic(root / CONFIRM_DIR / CANDIDATES_FILE,
                          {"candidates": [{"trial_id": c.trial_id, "params": c.params} for c in candidates]})
    while True:
        state = replay(space, candidates, load_finals(root, candidates), bounds)
        jobs = next_jobs(space, state)
        if not jobs:
            break
        log(f"confirmation: seed {jobs[0].index + 1} for {len(jobs)} point(s) "
            f"({state.runs} of {space.budget.confirm.runs} runs used)")
        run_round(jobs, f"confirm-{jobs[0].index}-{time.time_ns()}")
    doc = summary(space, state, bounds)
    write_json_atomic(root / CONFIRM_DIR / CONFIRMATION_FILE, doc)
    return doc
