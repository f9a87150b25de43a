"""The plain-text report of a sweep: every trial, then the best trial or the Pareto set, and how sure.

Values are the trials' values of record (``sweeps.record``); with replicates, ``mean +- h`` where h is
the half-width of the 95 % interval (its method is named in the report).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sweeps.record import Bound, interval_method
from sweeps.racing import paired_difference
from sweeps.report.select import candidates, choice_notes, choose, is_feasible, overlap
from sweeps.report.trials import TrialRow, collect_trials, load_bounds
from sweeps.space import SearchSpace


def format_report(root: Path, space: SearchSpace) -> str:
    """A plain-text table of all trials, then the best trial (or Pareto set)."""
    trials = collect_trials(root)
    if not trials:
        return f"{root}: no trial has started yet"
    bounds = load_bounds(root)
    names = sorted({k for t in trials for k in t.params})
    table = space.base_config.metrics
    metrics = list(dict.fromkeys([*space.metric_names, *(b.metric for b in bounds), *table.shown]))
    header = ["trial", "status", *names, *metrics, *(["feasible"] if bounds else [])]
    rows = [[t.trial_id, t.status, *[_fmt(t.params.get(n)) for n in names],
             *[_value(t, m) for m in metrics],
             *([_feasible(t, bounds)] if bounds else [])] for t in trials]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines += _notes(space, trials, bounds)
    counts = {s: sum(t.status == s for t in trials) for s in ("FINISHED", "RUNNING", "FAILED", "KILLED", "DAMAGED")}
    lines.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v))
    for t in trials:
        if t.status in ("FAILED", "DAMAGED") and t.reason:
            limit = 500 if t.status == "DAMAGED" else 200  # a damaged file's message ends with what to do
            lines.append(f"  {t.trial_id} {t.status.lower()}: {t.reason.splitlines()[0][:limit]}")
    lines += _choice(root, space, trials, bounds)
    return "\n".join(lines)


def _notes(space: SearchSpace, trials: list[TrialRow], bounds: Sequence[Bound]) -> list[str]:
    out = []
    r, how = space.budget.replicates, space.budget.aggregate
    if r > 1:
        upto = "up to " if space.budget.adaptive else ""
        seeds = "common seeds: replicate r of every point ran the same seed" if space.budget.seeds == "common" \
            else "seeds per point"
        out.append(f"values of record: {how} over {upto}{r} replicates ({seeds}); +- the half-width of the 95 % "
                   f"{interval_method(how)}")
        if space.budget.adaptive:
            out.append("  adaptive replication: a point got another seed only while the upper end of its 95 % "
                       "interval reached the incumbent's value")
    for b in bounds:
        out.append(f"constraint: {b.describe()}")
    for t in trials:
        if t.status == "FINISHED" and bounds and not is_feasible(t, bounds):
            broken = [b.describe() for b in bounds if b.violation(t.metrics) > 0]
            out.append(f"  {t.trial_id} infeasible (never chosen): breaks {'; '.join(broken)}")
    return out


def _choice(root: Path, space: SearchSpace, trials: list[TrialRow], bounds: Sequence[Bound]) -> list[str]:
    choice = choose(root, space, trials, bounds)
    best = choice.best
    if best is None:
        feasible = " feasible" if bounds else ""
        return [f"best: none yet (no finished{feasible} trial with all objective metrics)"]
    if space.is_multi_objective:
        return ["pareto set (" + ", ".join(space.metric_names) + "): " + ", ".join(
            f"{t.trial_id} (" + ", ".join(_value(t, m) for m in space.metric_names) + ")" for t in choice.pareto)]
    m = space.metric_names[0]
    confirmed = choice.confirmation is not None and choice.confirmation.get("best") == best.trial_id
    lines = [f"best: {best.trial_id} {m}={_value(best, m)}" + (" (the confirmation stage's pick)" if confirmed else "")]
    if choice.confirmation is not None:  # the race's values, on fresh seeds, decide: not the search's
        return lines + choice_notes(space, trials, bounds, choice) + _confirmed(choice.confirmation)
    for second in [t for t in candidates(space, trials, bounds) if t.trial_id != best.trial_id][:RUNNERS_UP]:
        lines.append(f"  runner-up {second.trial_id} {m}={_value(second, m)}: {_compare(best, second, m)}")
    return lines + choice_notes(space, trials, bounds, choice)


def _confirmed(doc: dict[str, Any]) -> list[str]:
    """One line per confirmed point: its mean over its fresh seeds, its probability of being best, how it left."""
    out = []
    for c in doc["candidates"]:
        mean = c["mean"]
        state = "raced to the end" if c["survivor"] else c["out"]
        beside = ", ".join(f"{m} {v:.4g}" for m, v in list(c.get("means", {}).items())[:BESIDE])
        out.append(f"  confirmed {c['trial_id']}: {doc['metric']} mean {mean:.4g}" + (f" ({beside})" if beside else "")
                   + f" over {len(c['values'])} fresh seeds, probability of being best {c['prob_best']:.2f}; {state}")
    return out


RUNNERS_UP = 3  # the best's paired differences to this many runners-up
BESIDE = 2  # a confirmed point's means of the benchmark's first shown metrics besides the objective


def _by_seed(t: TrialRow, metric: str) -> dict[int, float]:
    reps = t.record.replicates if t.record is not None else ()
    return {int(r["seed"]): float(r["final"][metric]) for r in reps
            if isinstance(r.get("final", {}).get(metric), (int, float))}


def _compare(best: TrialRow, other: TrialRow, m: str) -> str:
    """The paired difference on the seeds both ran (common seeds), else whether the intervals overlap."""
    d = paired_difference({"a": _by_seed(best, m), "b": _by_seed(other, m)}, "a", "b")
    if d.seeds >= 2:
        verdict = "within noise" if d.low <= 0 <= d.high else "apart"
        return (f"paired difference (best - runner-up) {d.mean:.4g}, 95 % interval [{d.low:.4g}, {d.high:.4g}] over "
                f"{d.seeds} common seeds: {verdict}")
    same = overlap(best, other, m)
    if same is True:
        return "the 95 % intervals overlap, the choice between them is within noise"
    if same is False:
        return "the intervals do not overlap"
    return "one seed each: no interval (budget.replicates > 1 or budget.confirm says how sure)"


def _value(t: TrialRow, metric: str) -> str:
    v = t.metrics.get(metric)
    iv = t.intervals.get(metric)
    if iv and isinstance(v, float):
        return f"{v:.4g}+-{(iv[1] - iv[0]) / 2:.2g}"
    return _fmt(v)


def _feasible(t: TrialRow, bounds: Sequence[Bound]) -> str:
    if t.status != "FINISHED":
        return "-"
    return "yes" if is_feasible(t, bounds) else "no"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
