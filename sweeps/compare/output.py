"""The leaderboard's files: ``leaderboard.md`` (the ranked table, the untuned rows, the hypotheses' verdicts),
``leaderboard.csv`` (one flat row per method) and ``fronts.png`` (each method's feasible Pareto front,
objective vs utility, offline matplotlib)."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweeps.compare.leaderboard import Estimate, Leaderboard

LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_CSV = "leaderboard.csv"
FRONTS_PNG = "fronts.png"


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
            *[m for m in board.metrics if m != board.metric], "feasibility (confirmed runs)", "runs (search + confirm)",
            "seeds", "tuned parameters"]
    lines = [f"# Leaderboard: {board.name}", "",
             f"Objective: {board.metric} ({board.direction}); budget: {board.budget}. Means with 95 % t intervals "
             "over each method's confirmation runs (common seeds across methods); P(best): posterior probability "
             "of the highest true mean (racing.prob_best); the difference is paired over shared seeds. Feasibility: "
             "each constraint's verdict on the confirmed runs (a method whose mean breaks a bound within noise "
             "stays ranked: the race drops a point only when a one-sided t test shows the bound broken).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in board.rows:
        diff = (f"{_num(r.difference.mean)} [{_num(r.difference.low)}, {_num(r.difference.high)}]"
                if r.difference else ("winner" if r.rank == 1 else "-"))
        cells = [str(r.rank) if r.rank else r.status, r.method, _num(r.prob_best), _est(r.metrics.get(board.metric)),
                 diff, *[_est(r.metrics.get(m)) for m in board.metrics if m != board.metric],
                 "; ".join(r.feasibility) or "-", f"{r.search_runs} + {r.confirm_runs}", str(len(r.values)),
                 _params(r.params)]
        lines.append("| " + " | ".join(cells) + " |")
    broken = [r for r in board.rows if r.failure]
    if broken:
        lines += ["", "Failed (each method's sweep ran on its own; the others are unaffected)", "",
                  "| method | why |", "|---|---|"]
        lines += [f"| {r.method} | {r.failure.replace('|', '/')} |" for r in broken]
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
                "seeds", "trial_id", "params", *[f"untuned_{m}" for m in board.metrics], "untuned_params",
                "failure", "feasibility"])
    for r in board.rows:
        d = r.difference
        u = r.untuned or {"metrics": {}, "params": {}}
        w.writerow([r.rank or "", r.method, r.status, r.prob_best if r.prob_best is not None else "",
                    *((d.mean, d.low, d.high) if d else ("", "", "")),
                    *[x if x is not None else "" for m in board.metrics for x in (r.metrics.get(m) or ("", None, None))],
                    r.search_runs, r.confirm_runs, len(r.values), r.trial_id or "", _params(r.params),
                    *[(u["metrics"].get(m) or ("",))[0] for m in board.metrics], _params(u["params"]),
                    r.failure or "", "; ".join(r.feasibility)])
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
