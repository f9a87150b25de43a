"""The plain-text report of a sweep: every trial, then the best trial or the Pareto set."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeps.report.select import pick_best
from sweeps.report.trials import collect_trials
from sweeps.space import SearchSpace


def format_report(root: Path, space: SearchSpace) -> str:
    """A plain-text table of all trials, then the best trial (or Pareto set)."""
    trials = collect_trials(root)
    if not trials:
        return f"{root}: no trial has started yet"
    names = sorted({k for t in trials for k in t["params"]})
    table = space.base_config.benchmark.metrics
    metrics = list(space.metric_names) + [m for m in table.shown if m not in space.metric_names]
    header = ["trial", "status", *names, *metrics]
    rows = [[t["trial_id"], t["status"], *[_fmt(t["params"].get(n)) for n in names],
             *[_fmt(t["metrics"].get(m)) for m in metrics]] for t in trials]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)) for r in [header, *rows]]
    counts = {s: sum(t["status"] == s for t in trials) for s in ("FINISHED", "RUNNING", "FAILED", "KILLED", "DAMAGED")}
    lines.append("trials: " + ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v))
    for t in trials:
        if t["status"] in ("FAILED", "DAMAGED") and t["reason"]:
            limit = 500 if t["status"] == "DAMAGED" else 200  # a damaged file's message ends with what to do
            lines.append(f"  {t['trial_id']} {t['status'].lower()}: {t['reason'].splitlines()[0][:limit]}")
    best, pareto = pick_best(space, trials)
    if best is None:
        lines.append("best: none yet (no finished trial with all objective metrics)")
    elif space.is_multi_objective:
        lines.append("pareto set (" + ", ".join(space.metric_names) + "): " + ", ".join(
            f"{t['trial_id']} (" + ", ".join(_fmt(t["metrics"][m]) for m in space.metric_names) + ")" for t in pareto))
    else:
        m = space.metric_names[0]
        lines.append(f"best: {best['trial_id']} {m}={_fmt(best['metrics'][m])}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


