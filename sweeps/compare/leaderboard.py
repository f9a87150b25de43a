"""The comparison's leaderboard: one row per method at its confirmed best, read from the methods' sweep
directories (no Ray). Ranked by the shared objective on the confirmation runs, which every method ran on the
same seeds (``confirm_seed``): each method's probability of being best (``racing.prob_best``) and its paired
difference to the winner with its 95 % interval (``racing.paired_difference``). Beside it each method's
untuned row (its default setting, the search's first point, on the search's seeds) and the runs spent.

A method whose sweep confirmed nothing (fewer than 2 feasible points, or no ``budget.confirm``) is listed
with its search best, marked ``not confirmed``, and left out of the ranking.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.compare.spec import CompareSpec
from sweeps.confirm import load_candidates, load_finals
from sweeps.racing import PairedDifference, paired_difference, prob_best
from sweeps.record import interval
from sweeps.report.select import choose, is_feasible
from sweeps.report.trials import TrialRow, collect_trials, load_bounds
from sweeps.space import SearchSpace, load_sweep_space

LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_CSV = "leaderboard.csv"
FRONTS_PNG = "fronts.png"

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
    return MethodRow(name, "confirmed", best.trial_id, dict(best.params), values, est, confirm_runs=confirm_runs,
                     **common)


def leaderboard_metrics(space: SearchSpace) -> tuple[str, ...]:
    """The objective, then every metric the benchmark reports (attack variants when the config enables
    them), then the constrained ones; each once."""
    from unlearn.attacks import attack_prefixes

    cfg = space.base_config
    shown = list(cfg.metrics.shown)
    attacks = [p + m for p in attack_prefixes(cfg.eval.quant, cfg.eval.relearn) for m in shown]
    return tuple(dict.fromkeys([space.metric_names[0], *shown, *attacks, *(c.metric for c in space.constraints)]))


def build_leaderboard(spec: CompareSpec, root: Path, methods_dir: str = "methods") -> Leaderboard:
    first = spec.methods[0].space
    metrics = leaderboard_metrics(first)
    rows = [method_row(m.name, root / methods_dir / m.name, metrics, m.default) for m in spec.methods]
    ranks = rank_methods({r.method: r.values for r in rows if r.status == "confirmed"}, spec.direction,
                         seed=first.budget.seed)
    ranked = [MethodRow(**{**r.__dict__, "rank": ranks[r.method][0], "prob_best": ranks[r.method][1],
                           "difference": ranks[r.method][2]}) if r.method in ranks else r for r in rows]
    ranked.sort(key=lambda r: (r.rank is None, r.rank or 0))
    b = first.budget
    budget = (f"{b.num_samples} search trials x {b.replicates} replicate(s) per method"
              + (f", confirmation: top {b.confirm.top} raced on at most {b.confirm.runs} runs on common fresh seeds"
                 if b.confirm else ", no confirmation stage"))
    return Leaderboard(spec.name, spec.metric, spec.direction, first.base_config.metrics.utility_metric, metrics,
                       tuple(ranked), budget)


# ---- output ------------------------------------------------------------------------------------------

def _num(v: Any) -> str:
    return "-" if not isinstance(v, (int, float)) or math.isnan(v) else f"{v:.4g}"


def _est(e: Estimate | None) -> str:
    if not e or not isinstance(e[0], (int, float)):
        return "-"
    return _num(e[0]) + (f" [{_num(e[1])}, {_num(e[2])}]" if e[1] is not None else "")


def _params(p: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in p.items()) or "-"


def format_leaderboard(board: Leaderboard) -> str:
    """Markdown: the ranked table, the untuned rows, and how to read them."""
    head = ["rank", "method", "P(best)", f"{board.metric} (95 % CI)", "winner - method (95 % CI)",
            *[m for m in board.metrics if m != board.metric], "runs (search + confirm)", "seeds", "tuned parameters"]
    lines = [f"# Leaderboard: {board.name}", "",
             f"Objective: {board.metric} ({board.direction}); budget: {board.budget}. Means with 95 % t intervals "
             "over each method's confirmation runs (common seeds across methods); P(best): posterior probability "
             "of the highest true mean (racing.prob_best); the difference is paired over shared seeds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board.rows:
        diff = (f"{_num(r.difference.mean)} [{_num(r.difference.low)}, {_num(r.difference.high)}]"
                if r.difference else ("winner" if r.rank == 1 else "-"))
        cells = [str(r.rank) if r.rank else r.status, r.method, _num(r.prob_best), _est(r.metrics.get(board.metric)),
                 diff, *[_est(r.metrics.get(m)) for m in board.metrics if m != board.metric],
                 f"{r.search_runs} + {r.confirm_runs}", str(len(r.values)), _params(r.params)]
        lines.append("| " + " | ".join(cells) + " |")
    untuned = [r for r in board.rows if r.untuned]
    if untuned:
        lines += ["", "Untuned (each method's default setting, the search's first point, on search seeds: not "
                  "confirmed; compare with care)", "",
                  "| method | setting | seeds | " + " | ".join(board.metrics) + " |", "|" + "---|" * (3 + len(board.metrics))]
        for r in untuned:
            u = r.untuned
            lines.append(f"| {r.method} | {_params(u['params'])} | {u['seeds']} | "
                         + " | ".join(_est(u["metrics"].get(m)) for m in board.metrics) + " |")
    return "\n".join(lines) + "\n"


def leaderboard_csv(board: Leaderboard) -> str:
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["rank", "method", "status", "prob_best", "diff_to_winner", "diff_low", "diff_high",
                *[f"{m}{s}" for m in board.metrics for s in ("", "_low", "_high")], "search_runs", "confirm_runs",
                "seeds", "trial_id", "params", *[f"untuned_{m}" for m in board.metrics], "untuned_params"])
    for r in board.rows:
        d = r.difference
        u = r.untuned or {"metrics": {}, "params": {}}
        w.writerow([r.rank or "", r.method, r.status, r.prob_best if r.prob_best is not None else "",
                    *((d.mean, d.low, d.high) if d else ("", "", "")),
                    *[x if x is not None else "" for m in board.metrics for x in (r.metrics.get(m) or ("", None, None))],
                    r.search_runs, r.confirm_runs, len(r.values), r.trial_id or "", _params(r.params),
                    *[(u["metrics"].get(m) or ("",))[0] for m in board.metrics], _params(u["params"])])
    return out.getvalue()


def _pareto(points: Sequence[tuple[float, float]], minimize_x: bool) -> list[tuple[float, float]]:
    """Non-dominated points (x by its direction, utility y higher is better), by x."""
    pts = sorted(points, key=lambda p: (p[0] if minimize_x else -p[0], -p[1]))
    front, best_y = [], -math.inf
    for x, y in pts:
        if y > best_y:
            front.append((x, y))
            best_y = y
    return front


def plot_fronts(board: Leaderboard, path: Path) -> Path | None:
    """Each method's feasible Pareto front (objective vs utility) from its search trials, on one figure."""
    if board.utility is None or not any(r.front for r in board.rows):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for r in board.rows:
        if not r.front:
            continue
        front = _pareto(r.front, board.direction == "minimize")
        xs, ys = zip(*r.front)
        line = ax.plot(*zip(*front), marker="o", label=r.method)[0]
        ax.scatter(xs, ys, s=10, alpha=0.35, color=line.get_color())
    ax.set_xlabel(f"{board.metric} ({board.direction})")
    ax.set_ylabel(f"{board.utility} (maximize)")
    ax.set_title(f"{board.name}: feasible Pareto fronts")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_leaderboard(board: Leaderboard, root: Path, appendix: str = "") -> list[Path]:
    """``leaderboard.md`` (with ``appendix``: the hypotheses' verdicts), ``.csv`` and the fronts' PNG."""
    from sweeps.layout import write_text_atomic

    write_text_atomic(root / LEADERBOARD_MD, format_leaderboard(board) + appendix)
    write_text_atomic(root / LEADERBOARD_CSV, leaderboard_csv(board))
    png = plot_fronts(board, root / FRONTS_PNG)
    return [root / LEADERBOARD_MD, root / LEADERBOARD_CSV, *([png] if png else [])]


def load_leaderboard(root: str | Path) -> Leaderboard:
    """A comparison directory's leaderboard, rebuilt from its methods' directories."""
    from sweeps.compare.run import METHODS_DIR, load_compare_dir

    spec, _ = load_compare_dir(root)
    return build_leaderboard(spec, Path(root).expanduser().resolve(), METHODS_DIR)
