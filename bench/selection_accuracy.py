"""Choosing right under seed noise: which selection statistic, and which allocation of a sweep's runs,
exports the truly best point of a grid, measured on a replicate table (``bench.replicate_table``).

    python -m bench.selection_accuracy --table bench/results/replicates_4x4.jsonl \\
        --json bench/results/selection_accuracy.json

The table holds every point of SatImp-GD's beta1 x beta2 grid run with the sweeps' pool of seeds (0-9)
and with truth seeds no sweep draws (5000-5019). Reported, every table with the commit and resolved run
config its lines were recorded with (and a warning when that is not this checkout's commit):

1. The grid: each point's truth means (forget quality and model utility with 95 % t intervals,
   ``sweeps.record.interval``), the feasible set under the shipped constraint (``search_spaces/satimp.yaml``:
   model utility >= 0.9 x the prepared target model's, resolved as a sweep resolves it,
   ``unlearn.train.prepare.target_metrics``); the truth best is the feasible point of highest truth mean
   forget quality.
2. Signal to noise of the candidate statistics (``bench.selection_table``): forget quality, its log, the KS
   D, W1 of the log ratios, Cramér-von Mises, and the pooled-replicate KS p-value (R = 3), on the truth
   and on the pool, one-way and with the seed effect removed, and the correlation of points across seeds.
3. Selection accuracy of simulated sweeps (``bench.selection_sim``: settings a-h) at equal compute, for
   each ``--objective``: share exporting the truth best (by forget quality; by the objective's truth
   mean), within 0.02 / 0.05 of its forget quality (and feasible), mean regret, truly infeasible exports,
   and the race's stated probability against how often it was right. Targets at 48 runs: truth best
   >= 80 %, within 0.05 >= 95 %, stated confidence calibrated within 10 points.
4. Search efficiency: trials (and runs) to first sample the truth best; the product's TPE at R = 1 and
   R = 3 common seeds, random search beside it; median over sweep seeds, as a share of the grid (target
   <= 1/3); on each ``--search-table`` too (the 6 x 6 table when it is recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from bench.selection_sim import (
    RACES,
    SETTINGS,
    Adaptive,
    Outcome,
    Problem,
    SimConfig,
    Trial,
    common_order,
    equal,
    fixed,
    make_problem,
    ocba,
    outcome,
    point_seeds,
    race,
    run_sweep,
    top_feasible,
)
from bench.selection_table import POOLED, RUN_STATISTICS, Grid, load_grid, observations, provenance_tag, snr_table
from sweeps.record import Bound

CALIBRATION_BINS = (0.0, 0.5, 0.8, 0.95, 1.0)
TARGETS = {"compute": 48, "best_share": 0.80, "within_0.05": 0.95, "calibration_gap": 0.10}
MIN_BIN = 20  # sweeps a calibration bin needs to be judged
BOOTSTRAP = 2000  # resamples of the seeds: how well a seed set identifies its own best point
MAX_TRIALS = 200  # search efficiency: a sweep that never samples the truth best stops here
CONTENDERS = 4  # the SNR among the best points by truth forget quality: where the choice is made
MARKS = "+x#%&"  # the grid table's marks of each objective's truth best


# --- the simulation, per sweep seed (run in worker processes) ----------------------------------------

def simulate_seed(problem: Problem, cfg: SimConfig, sweep_seed: int) -> list[Outcome]:
    """Every setting at every compute for one sweep seed. A TPE sweep of a fixed observer is run once per
    sampler configuration (its startup trials) and its prefixes serve the smaller computes."""
    from sweeps.search import tpe_startup_trials

    n, r = problem.score.shape[1], cfg.replicates
    order = common_order(sweep_seed, n)
    observers = {"a": fixed(problem, lambda p: point_seeds(sweep_seed, p, 1, n)),
                 "b": fixed(problem, lambda p: point_seeds(sweep_seed, p, r, n)),
                 "c": fixed(problem, lambda p: order[:r]),
                 "i": fixed(problem, lambda p: order[:1])}
    memo: dict[tuple[str, int], list[Trial]] = {}

    def sweep(name: str, trials: int) -> list[Trial]:
        key = (name, tpe_startup_trials(trials))
        if len(memo.get(key, ())) < trials:
            memo[key] = run_sweep(problem, sweep_seed, observers[name], sampler_trials=trials, max_trials=trials)
        return memo[key][:trials]

    out = []
    for c in sorted(cfg.computes, reverse=True):
        out += [outcome(problem, "a", c, sweep("a", c)), outcome(problem, "b", c, sweep("b", c // r)),
                outcome(problem, "c", c, sweep("c", c // r)), outcome(problem, "i", c, sweep("i", c)),
                *(confirmed(problem, cfg, c, order, sweep, name) for name in RACES)]
        adaptive = Adaptive(problem, order, c, cfg.adaptive_max)
        out.append(outcome(problem, "e", c, run_sweep(problem, sweep_seed, adaptive, sampler_trials=c // r,
                                                      max_trials=c)))
        for name, known in (("f", False), ("h", True)):
            out.append(Outcome(name, c, *ocba(problem, order, c, known_feasible=known)))
        out.append(equal(problem, order, c))
    return out


def confirmed(problem: Problem, cfg: SimConfig, compute: int, order: list[int],
              sweep: Callable[[str, int], list[Trial]], name: str) -> Outcome:
    """Settings ``d``, ``j``, ``k``: the common-seed search (R = 3 or 1) on part of the runs, then the race
    of its top k."""
    search, rule = RACES[name]
    r = cfg.replicates if search in ("b", "c") else 1
    fresh = order[r:]  # for "a" a candidate's own search seed may be among them (1 in 10 per point on a 10-seed pool)
    budget = min(compute // 2, cfg.race_k * len(fresh))
    trials = sweep(search, (compute - budget) // r)
    base = outcome(problem, name, compute, trials)
    cand = top_feasible(problem, trials, cfg.race_k)
    in_race = float(problem.best in cand)
    if len(cand) < 2:
        return base._replace(stated=1.0 if cand else math.nan, in_race=in_race, race_right=float(bool(cand)))
    point, stated, spent = race(problem, cand, fresh, order[:r], compute - base.runs, cfg.confidence, rule)
    right = float(point == max(cand, key=lambda p: problem.truth_score[p]))
    return base._replace(export=point, runs=base.runs + spent, stated=stated, in_race=in_race, race_right=right)


def search_seed(problem: Problem, max_trials: int, sweep_seed: int) -> dict[str, int | None]:
    """Trials until the truth best is first sampled (None: not within ``max_trials``)."""
    n, target = problem.score.shape[1], problem.best
    order = common_order(sweep_seed, n)
    stop = lambda p: p == target  # noqa: E731
    size = problem.score.shape[0]
    r1 = fixed(problem, lambda p: point_seeds(sweep_seed, p, 1, n))
    runs = {"tpe_R1": run_sweep(problem, sweep_seed, r1, sampler_trials=size, max_trials=max_trials, stop=stop),
            "tpe_R3_common": run_sweep(problem, sweep_seed, fixed(problem, lambda p: order[:3]), sampler_trials=size,
                                       max_trials=max_trials, stop=stop),
            "random": run_sweep(problem, sweep_seed, r1, sampler_trials=size, max_trials=max_trials, sampler="random",
                                stop=stop)}
    return {k: len(t) if t and t[-1].point == target else None for k, t in runs.items()}


def parallel(fn: Callable[[int], Any], seeds: Sequence[int], workers: int) -> list[Any]:
    if workers <= 1:
        return [fn(s) for s in seeds]
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        return list(pool.map(fn, seeds, chunksize=max(1, len(seeds) // (4 * workers))))


# --- scoring -----------------------------------------------------------------------------------------

def score_export(problem: Problem, point: int) -> dict[str, float]:
    """One export against the truth (an infeasible export is never within reach of the best)."""
    best = problem.best
    if point < 0 or best < 0:
        return {"best": 0.0, "best_objective": 0.0, "within_0.02": 0.0, "within_0.05": 0.0, "regret": math.nan,
                "infeasible": 0.0, "no_export": 1.0}
    gap = float(problem.truth_quality[best] - problem.truth_quality[point])
    ok = bool(problem.truth_feasible[point])
    return {"best": float(point == best), "best_objective": float(point == problem.best_by_objective),
            "within_0.02": float(ok and gap <= 0.02), "within_0.05": float(ok and gap <= 0.05), "regret": gap,
            "infeasible": float(not ok), "no_export": 0.0}


def summarise(problem: Problem, outcomes: list[Outcome]) -> list[dict[str, Any]]:
    """Per (setting, compute): shares over the sweep seeds."""
    groups: dict[tuple[str, int], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.setting, o.compute), []).append(o)
    rows = []
    for (setting, compute), group in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        scores = [score_export(problem, o.export) for o in group]
        # over the truly feasible exports: an infeasible one may beat the truth best's forget quality
        regrets = [s["regret"] for s in scores if not math.isnan(s["regret"]) and not s["infeasible"]]
        row = {"setting": setting, "label": SETTINGS[setting], "compute": compute, "sweeps": len(group),
               **{f"{k}_share": statistics.fmean(s[k] for s in scores)
                  for k in ("best", "best_objective", "within_0.02", "within_0.05", "infeasible", "no_export")},
               "mean_regret": statistics.fmean(regrets) if regrets else math.nan,
               "mean_runs": statistics.fmean(o.runs for o in group),
               "mean_distinct_points": statistics.fmean(o.distinct for o in group),
               "exports": dict(sorted(_count(o.export for o in group).items()))}
        if setting in RACES:
            row["calibration"] = calibration(group, problem.best)
            row["truth_best_in_race_share"] = statistics.fmean(o.in_race for o in group)
            row["stated_by_sweep"] = [o.stated for o in group]  # sweep seed order, beside the exports
            row["export_by_sweep"] = [o.export for o in group]
        rows.append(row)
    return rows


def _count(items) -> dict[int, int]:
    out: dict[int, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def calibration(group: Sequence[Outcome], best: int) -> dict[str, Any]:
    """The race's stated prob_best against how often its export was the truth best, binned."""
    pairs = [(o.stated, float(o.export == best), o.in_race, o.race_right) for o in group if not math.isnan(o.stated)]
    mean = lambda sel, k: statistics.fmean(p[k] for p in sel) if sel else math.nan  # noqa: E731
    bins = []
    for lo, hi in zip(CALIBRATION_BINS, CALIBRATION_BINS[1:]):
        sel = [p for p in pairs if lo <= p[0] < hi or (hi == 1.0 and p[0] == 1.0)]
        bins.append({"from": lo, "to": hi, "sweeps": len(sel), "mean_stated": mean(sel, 0),
                     "right_share": mean(sel, 1), "truth_best_in_race_share": mean(sel, 2),
                     "right_among_candidates_share": mean(sel, 3)})
    judged = [abs(b["mean_stated"] - b["right_share"]) for b in bins if b["sweeps"] >= MIN_BIN]
    stated = statistics.fmean(p[0] for p in pairs) if pairs else math.nan
    right = statistics.fmean(p[1] for p in pairs) if pairs else math.nan
    return {"bins": bins, "mean_stated": stated, "right_share": right, "overall_gap": abs(stated - right),
            "right_among_candidates_share": mean(pairs, 3),
            "max_bin_gap": max(judged) if judged else math.nan, "sweeps_stating": len(pairs)}


def pool_ceiling(problem: Problem) -> dict[str, Any]:
    """What every pool seed on every point would export (no sweep noise left but the pool's own)."""
    trials = [Trial(p, float(problem.score[p].mean()), float(problem.utility[p].mean()), problem.score.shape[1])
              for p in range(problem.score.shape[0])]
    from bench.selection_sim import export

    point = export(problem, trials)
    return {"export": point, "runs": int(problem.score.size), **score_export(problem, point)}


def efficiency(problem: Problem, found: list[dict[str, int | None]], max_trials: int) -> list[dict[str, Any]]:
    size = problem.score.shape[0]
    rows = []
    for key, r in (("tpe_R1", 1), ("tpe_R3_common", 3), ("random", 1), ("random", 3)):
        counts = [f[key] if f[key] is not None else max_trials for f in found]
        median = statistics.median(counts)
        rows.append({"sampler": key if key != "random" else f"random_R{r}", "replicates": r,
                     "median_trials": median, "mean_trials": statistics.fmean(counts), "worst_trials": max(counts),
                     "median_runs": median * r, "trials_share_of_grid": median / size,
                     "runs_share_of_grid": median * r / size,
                     "not_reached": sum(f[key] is None for f in found), "trials_to_best": counts})
    return rows


# --- the grid, the bound -------------------------------------------------------------------------------

def resolve_bound(grid: Grid, space: str) -> tuple[Bound, dict[str, float]]:
    """The shipped space's constraint resolved as a sweep resolves it (``sweeps.fit.resolve_bounds``):
    against the prepared target model of the table's run config (prepared from the cache when present)."""
    from sweeps.space import load_space
    from unlearn.train.config import run_config_from_dict
    from unlearn.train.prepare import prepare, target_metrics

    constraints = load_space(space).constraints
    if len(constraints) != 1:
        raise SystemExit(f"--space {space}: {len(constraints)} constraints; this bench scores exactly one")
    cfg = run_config_from_dict(grid.run_config)
    relative = [c.metric for c in constraints if c.relative]
    target = target_metrics(cfg, prepare(cfg, log=lambda m: None), relative) if relative else {}
    return constraints[0].resolve(target), {m: float(target[m]) for m in relative}


def direction(grid: Grid, objective: str) -> bool:
    """Whether ``objective`` is maximised, from the table's benchmark's metric table."""
    from unlearn.benchmarks import get_benchmark

    return get_benchmark(grid.run_config["data"]["benchmark"]).metrics.higher_is_better(objective, "--objective")


def grid_summary(grid: Grid, bound: Bound, objectives: Sequence[str], problem: Problem) -> dict[str, Any]:
    from sweeps.record import interval

    truth, pool = grid.truth.values, grid.pool.values
    points = []
    for i, p in enumerate(grid.points):
        points.append({"point": p, "truth_forget_quality": float(truth["forget_quality"][i].mean()),
                       "truth_forget_quality_interval": interval(list(truth["forget_quality"][i]), "mean"),
                       "truth_utility": float(truth[bound.metric][i].mean()),
                       "truth_utility_interval": interval(list(truth[bound.metric][i]), "mean"),
                       "feasible": bool(problem.truth_feasible[i]),
                       **{f"truth_{o}": float(truth[o][i].mean()) for o in objectives},
                       "pool_forget_quality": float(pool["forget_quality"][i].mean()),
                       "pool_utility": float(pool[bound.metric][i].mean()),
                       "observed_feasible_R1": observed_feasible(pool[bound.metric][i], bound, 1),
                       "observed_feasible_R3": observed_feasible(pool[bound.metric][i], bound, 3)})
    best = problem.best
    shares = {label: {_name(grid, p) or "none": v for p, v in
                      best_shares(values["forget_quality"], values[bound.metric], bound).items()}
              for label, values in (("truth", truth), ("pool", pool))}
    return {"bound": bound.to_dict(), "points": points, "best_under_bootstrap": shares,
            "feasible": [p["point"] for p in points if p["feasible"]],
            "truth_best": grid.points[best] if best >= 0 else None,
            "pool_seeds": list(grid.pool.seeds), "truth_seeds": list(grid.truth.seeds)}


def best_shares(quality: np.ndarray, utility: np.ndarray, bound: Bound, resamples: int = BOOTSTRAP,
                seed: int = 0) -> dict[int, float]:
    """How often each point is the best feasible one when the seeds are resampled with replacement (the
    same resample for every point; feasibility on the resample's utility means): how well ``quality``'s
    seeds identify their own best point. quality, utility: (P, S)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, quality.shape[1], size=(resamples, quality.shape[1]))
    q, u = quality[:, idx].mean(axis=2), utility[:, idx].mean(axis=2)  # (P, resamples)
    sign = 1.0 if bound.kind == "min" else -1.0
    ok = sign * (u - bound.threshold) >= 0
    best = np.where(ok.any(axis=0), np.argmax(np.where(ok, q, -np.inf), axis=0), -1)
    counts = _count(best.tolist())
    return {p: n / resamples for p, n in sorted(counts.items(), key=lambda kv: -kv[1])}


def observed_feasible(utility: np.ndarray, bound: Bound, r: int) -> float:
    """The share of the point's r-subsets of pool seeds whose mean utility meets the bound: how often a
    trial of R = r sees it feasible."""
    import itertools

    subsets = [np.mean(c) for c in itertools.combinations(utility.tolist(), r)]
    return statistics.fmean(bound.violation({bound.metric: float(u)}) <= 0 for u in subsets)


# --- printing ------------------------------------------------------------------------------------------

def _iv(iv: Sequence[float] | None) -> str:
    return f"[{iv[0]:.3f}, {iv[1]:.3f}]" if iv else "[n/a]"


def print_grid(summary: dict[str, Any], tag: str, objectives: Sequence[str], best_by: dict[str, str | None]) -> None:
    print(f"\nThe grid: truth means over {len(summary['truth_seeds'])} truth seeds "
          f"({_seeds(summary['truth_seeds'])}); pool {_seeds(summary['pool_seeds'])} {tag}")
    print(f"  feasible: {summary['bound']['metric']} >= {summary['bound']['threshold']:.4f} "
          f"({summary['bound']['text']}), judged on the truth mean; * truth best by forget quality, "
          + ", ".join(f"{MARKS[k]} by {o}" for k, o in enumerate(objectives)))
    objectives = [o for o in objectives if o != "forget_quality"]  # its truth mean is the first column
    head = "".join(f"  {o.removeprefix('forget_'):>12}" for o in objectives)
    print(f"  {'point':<9}    FQ mean [95 % t]          MU mean [95 % t]          feas.{head}  pool FQ  pool MU  "
          "seen feasible R=1  R=3")
    for p in summary["points"]:
        mark = ("*" if p["point"] == summary["truth_best"] else " ") + "".join(
            MARKS[k] if best == p["point"] else " " for k, best in enumerate(best_by.values()))
        cells = "".join(f"  {p[f'truth_{o}']:>12.4f}" for o in objectives)
        fq, mu = p["truth_forget_quality"], p["truth_utility"]
        print(f"  {p['point']:<9}{mark:<4}{fq:.4f} {_iv(p['truth_forget_quality_interval']):<18}  {mu:.4f} "
              f"{_iv(p['truth_utility_interval']):<18}  {'yes' if p['feasible'] else 'no':<4}{cells}  "
              f"{p['pool_forget_quality']:.4f}   {p['pool_utility']:.4f}  {p['observed_feasible_R1']:>17.2f}  "
              f"{p['observed_feasible_R3']:.2f}")


def print_bootstrap(summary: dict[str, Any]) -> None:
    print(f"  the best feasible point by mean forget quality when the seeds are resampled ({BOOTSTRAP} bootstrap "
          "resamples, feasibility on the resampled utility):")
    for label, shares in summary["best_under_bootstrap"].items():
        print(f"    {label:<5} ({len(summary[label + '_seeds'])} seeds): "
              + ", ".join(f"{p} {v:.0%}" for p, v in list(shares.items())[:6]))


def _seeds(seeds: Sequence[int]) -> str:
    contiguous = bool(seeds) and list(seeds) == list(range(seeds[0], seeds[-1] + 1))
    return f"{seeds[0]}-{seeds[-1]}" if contiguous else str(list(seeds))


def agreement(grid: Grid, problem: Problem) -> list[dict[str, Any]]:
    """Per statistic, on the truth: the feasible point best by its truth mean, and the Spearman correlation
    of its truth means (signed: higher is better) with forget quality's over the grid."""
    from scipy.stats import spearmanr

    rows = []
    for name in (*RUN_STATISTICS, POOLED):
        obs = observations(grid, grid.truth, name, 3)
        if not obs:
            continue
        sign = 1.0 if name == POOLED or direction(grid, name) else -1.0
        means = sign * obs[min(obs)].mean(axis=1)
        best = int(np.argmax(np.where(problem.truth_feasible, means, -np.inf)))
        rows.append({"statistic": name, "truth_best": grid.points[best], "is_quality_best": best == problem.best,
                     "spearman_with_quality": float(spearmanr(means, problem.truth_quality).statistic)})
    return rows


def print_snr(rows: list[dict[str, Any]], agree: list[dict[str, Any]], tag: str, counts: dict[str, int],
              contenders: Sequence[str]) -> None:
    print(f"\nSignal to noise of the selection statistics (truth: {counts['truth']} seeds, pool: {counts['pool']}; "
          f"R 3: disjoint blocks of 3 seeds; top {len(contenders)}: over the contenders {', '.join(contenders)}; "
          f"last, the constrained metric) {tag}")
    print("  statistic             set    R    snr    icc  snr 2-way  icc 2-way  corr(points)  snr top  icc top")
    for row in rows:
        for label in ("truth", "pool"):
            for r, v in row.get(label, {}).items():
                if v:
                    top = v.get("contenders", {})
                    print(f"  {row['statistic']:<20}  {label:<5}  {r[1:]:>2}  {v['snr']:>5.2f}  {v['icc']:>5.2f}  "
                          f"{v['snr_two_way']:>9.2f}  {v['icc_two_way']:>9.2f}  {v['mean_correlation']:>12.2f}  "
                          f"{top.get('snr', math.nan):>7.2f}  {top.get('icc', math.nan):>7.2f}")
    print("  on the truth, the feasible point best by each statistic and its Spearman correlation with forget "
          "quality:")
    for a in agree:
        same = "(= FQ best)" if a["is_quality_best"] else "(NOT FQ best)"
        print(f"  {a['statistic']:<20}  best {a['truth_best']:<9} {same:<13}  "
              f"Spearman {a['spearman_with_quality']:.3f}")


def print_rows(rows: list[dict[str, Any]]) -> None:
    """The selection table's rows, one per (compute, setting)."""
    print("  C runs  setting                    = best  = best(obj)  within .02  within .05  regret*  infeasible  "
          "none  runs  points")
    for r in rows:
        print(f"  {r['compute']:>6}  {r['setting']} {r['label']:<24} {r['best_share']:>5.2f}  "
              f"{r['best_objective_share']:>9.2f}  {r['within_0.02_share']:>10.2f}  {r['within_0.05_share']:>10.2f}  "
              f"{r['mean_regret']:>6.4f}  {r['infeasible_share']:>10.2f}  {r['no_export_share']:>4.2f}  "
              f"{r['mean_runs']:>4.0f}  {r['mean_distinct_points']:>6.1f}")


def print_selection(objective: str, rows: list[dict[str, Any]], ceiling: dict[str, Any], tag: str,
                    truth_seeds: int) -> None:
    print(f"\nSelection accuracy, objective {objective} (replicate mean), {rows[0]['sweeps']} sweep seeds, "
          f"scored on {truth_seeds} truth seeds {tag}")
    print_rows(rows)
    print("  (* mean over the truly feasible exports; = best(obj): the truth best by the objective's truth mean)")
    print(f"  every pool seed on every point ({ceiling['runs']} runs) exports {ceiling['export_point']}: "
          f"{'the truth best' if ceiling['best'] else 'not the truth best'}, regret {ceiling['regret']:.4f}")
    for r in rows:
        if r["setting"] in RACES:
            cal = r["calibration"]
            print(f"  race {r['setting']} at C={r['compute']}: stated prob_best {cal['mean_stated']:.2f}, export = truth best "
                  f"{cal['right_share']:.2f}, = the candidates' best by the objective "
                  f"{cal['right_among_candidates_share']:.2f}; truth best among the candidates "
                  f"{r['truth_best_in_race_share']:.2f}")
            for b in cal["bins"]:
                if b["sweeps"]:
                    print(f"    stated [{b['from']:.2f}, {b['to']:.2f}): {b['sweeps']:>3} sweeps, stated "
                          f"{b['mean_stated']:.2f}, right {b['right_share']:.2f}, right among the candidates "
                          f"{b['right_among_candidates_share']:.2f}")


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each setting at the target compute against the targets."""
    out = []
    for r in rows:
        if r["compute"] != TARGETS["compute"]:
            continue
        cal = r.get("calibration", {})
        gap = max(cal.get("max_bin_gap", math.nan), cal.get("overall_gap", math.nan))  # NaN when either is
        if cal and math.isnan(gap):
            gap = cal["overall_gap"]
        out.append({"setting": r["setting"], "best_share": r["best_share"],
                    "best_ok": r["best_share"] >= TARGETS["best_share"], "within_0.05": r["within_0.05_share"],
                    "within_ok": r["within_0.05_share"] >= TARGETS["within_0.05"], "calibration_gap": gap,
                    "calibration_ok": None if math.isnan(gap) else gap <= TARGETS["calibration_gap"]})
    return out


def print_targets(rows: list[dict[str, Any]]) -> None:
    ok = lambda flag: "ok" if flag else "NO"  # noqa: E731
    print(f"  targets at {TARGETS['compute']} runs (= best >= {TARGETS['best_share']:.0%} / within .05 >= "
          f"{TARGETS['within_0.05']:.0%} / stated calibrated within {TARGETS['calibration_gap'] * 100:.0f} points): "
          + "; ".join(f"{t['setting']} {ok(t['best_ok'])}/{ok(t['within_ok'])}"
                      + (f"/{ok(t['calibration_ok'])} (gap {t['calibration_gap']:.2f})"
                         if t["calibration_ok"] is not None else "") for t in rows))


def print_efficiency(name: str, rows: list[dict[str, Any]], size: int, tag: str, max_trials: int) -> None:
    print(f"\nSearch efficiency on {name} ({size} points): trials to first sample the truth best {tag}")
    for s in rows:
        print(f"  {s['sampler']:<14} R={s['replicates']}: median {s['median_trials']:g} trials "
              f"({s['trials_share_of_grid']:.2f} of the grid), {s['median_runs']:g} runs "
              f"({s['runs_share_of_grid']:.2f}); mean {s['mean_trials']:.1f}, worst {s['worst_trials']}, "
              f"not reached in {max_trials}: {s['not_reached']}")


# --- the command -----------------------------------------------------------------------------------------

def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, default=Path("bench/results/replicates_4x4.jsonl"),
                    help="the replicate table (bench.replicate_table --out; its shards are read too)")
    ap.add_argument("--json", type=Path, help="write every figure here")
    ap.add_argument("--objective", nargs="+", default=["forget_log_quality", "forget_quality"],
                    help="selection statistics the sweeps optimise (each simulated; a metric of the runs' final)")
    ap.add_argument("--space", default="satimp", help="the shipped space whose constraint decides feasibility")
    ap.add_argument("--sweeps", type=int, default=200, help="sweep seeds simulated")
    ap.add_argument("--compute", type=int, nargs="+", default=[24, 48, 96], help="total runs per sweep")
    ap.add_argument("--pool-seeds", nargs="+", default=["0-9"], help="seeds the sweeps draw from (N or N-M)")
    ap.add_argument("--truth-seeds", nargs="+", default=["5000-5019"], help="seeds the truth is the mean of")
    ap.add_argument("--race-k", type=int, default=3, help="setting d: candidates raced")
    ap.add_argument("--confidence", type=float, default=0.95, help="setting d: the race stops at this prob_best")
    ap.add_argument("--adaptive-max", type=int, default=5, help="setting e: most runs per trial")
    ap.add_argument("--search-table", type=Path, nargs="*",
                    help="further tables for the search efficiency (default: replicates_6x6.jsonl beside --table, "
                         "when recorded)")
    ap.add_argument("--feasibility", choices=("observed", "truth"), default="observed",
                    help="truth: every run reports its point's truth mean utility (the settings then judge "
                         "feasibility without error: an ablation that leaves the objective's noise alone)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="processes over sweep seeds")
    ap.add_argument("--splits", type=int, default=0,
                    help="also score the sweeps over K random pool / truth partitions of all the recorded seeds "
                         "(split_grids), --sweeps spread over them; 0: the fixed pool only")
    ap.add_argument("--only-splits", action="store_true", help="skip the fixed pool's sections (grid, SNR, selection)")
    args = ap.parse_args()
    if any(c % 3 or c <= 0 for c in args.compute):
        raise SystemExit(f"--compute {args.compute}: each must be a positive multiple of 3 (R = 3 at equal compute)")
    if args.search_table is None:
        six = args.table.with_name("replicates_6x6.jsonl")
        recorded = six.is_file() or any(six.parent.glob(f"{six.stem}.*{six.suffix}"))
        args.search_table = [six] if recorded and six != args.table else []
    return args


def load(path: Path, args: argparse.Namespace) -> Grid:
    from bench.replicate_table import parse_seeds

    grid = load_grid(path, parse_seeds(args.pool_seeds), parse_seeds(args.truth_seeds))
    if len(grid.pool.seeds) < 4 or len(grid.truth.seeds) < 2:
        raise SystemExit(f"--table {path}: {len(grid.pool.seeds)} pool seeds and {len(grid.truth.seeds)} truth seeds "
                         "are recorded for every point; needed: 4 pool seeds (R = 3 and a race) and 2 truth seeds")
    return grid


def print_provenance(grid: Grid) -> None:
    prov = grid.provenance
    print(f"table {prov['table']}: {prov['runs']} runs, commits {prov['commits']}, "
          f"{prov['config_variants']} resolved run config(s), sha {prov['config_sha']}:")
    print("  " + json.dumps(prov["config"], separators=(",", ":")))
    if not prov["same_commit"]:
        print(f"  NOTE: the table was recorded at {', '.join(prov['commits'])}, this checkout is "
              f"{prov['current_commit']}: its figures are that commit's")
    if prov["config_variants"] > 1:
        print("  NOTE: the lines were recorded with different run configs (beyond beta1, beta2, seed)")
    if set(grid.pool.seeds) & set(grid.truth.seeds):
        print("  NOTE: truth and pool share seeds: development figures only, not the truth")


def selection(grid: Grid, objective: str, bound: Bound, cfg: SimConfig, args: argparse.Namespace) -> dict[str, Any]:
    problem = make_problem(grid, objective, bound, direction(grid, objective), feasibility=args.feasibility)
    outcomes = parallel(functools.partial(simulate_seed, problem, cfg), range(args.sweeps), args.workers)
    rows = summarise(problem, [o for seed in outcomes for o in seed])
    for row in rows:
        row["exports"] = {str(_name(grid, p)): n for p, n in row["exports"].items()}
        if "export_by_sweep" in row:
            row["export_by_sweep"] = [_name(grid, p) for p in row["export_by_sweep"]]
    ceiling = pool_ceiling(problem)
    ceiling["export_point"] = _name(grid, ceiling["export"])
    result = {"objective": objective, "higher_is_better": direction(grid, objective),
              "truth_best": _name(grid, problem.best),
              "truth_best_by_objective": _name(grid, problem.best_by_objective),
              "rows": rows, "pool_ceiling": ceiling, "targets": targets(rows), "recorded": _recorded(grid)}
    if args.feasibility == "truth":
        print("\nABLATION: feasibility judged on the truth means (--feasibility truth)")
    print_selection(objective, rows, result["pool_ceiling"], provenance_tag(grid.provenance), len(grid.truth.seeds))
    print_targets(result["targets"])
    return result


def split_grids(args: argparse.Namespace) -> list[Grid]:
    """``--splits K``: K partitions of every recorded seed (pool and truth seeds together) into a pool of
    the pool's size and a truth of the rest, drawn with ``random.Random(split)``. A single fixed pool shares
    its luck with every simulated sweep (on the 4 x 4 table the 10 pool seeds give the three best points a
    utility 0.02-0.03 below their 20-seed truth); sweeps spread over K pools measure the method, not one
    pool. Every split's truth is still seeds its sweeps never draw."""
    import random

    from bench.replicate_table import parse_seeds

    pool, truth = parse_seeds(args.pool_seeds), parse_seeds(args.truth_seeds)
    seeds = sorted({*pool, *truth})
    out = []
    for k in range(args.splits):
        drawn = random.Random(k).sample(seeds, len(pool))
        out.append(load_grid(args.table, sorted(drawn), [s for s in seeds if s not in drawn]))
    return out


def split_selection(grids: Sequence[Grid], objective: str, bound: Bound, cfg: SimConfig,
                    args: argparse.Namespace) -> dict[str, Any]:
    """Selection accuracy over ``--splits`` pool / truth partitions: ``--sweeps`` sweep seeds spread evenly
    over them, each sweep scored on its own split's truth; the shares are over all sweeps."""
    per = max(1, args.sweeps // len(grids))
    scored: list[tuple[Outcome, dict[str, float], float]] = []  # (outcome, its score, export = its truth best)
    bests = []
    for k, grid in enumerate(grids):
        problem = make_problem(grid, objective, bound, direction(grid, objective), feasibility=args.feasibility)
        bests.append(_name(grid, problem.best))
        outcomes = parallel(functools.partial(simulate_seed, problem, cfg), range(k * per, (k + 1) * per),
                            args.workers)
        scored += [(o, score_export(problem, o.export), float(o.export == problem.best))
                   for seed in outcomes for o in seed]
    rows = []
    for setting, compute in sorted({(o.setting, o.compute) for o, _, _ in scored}, key=lambda x: (x[1], x[0])):
        group = [(o, sc, right) for o, sc, right in scored if o.setting == setting and o.compute == compute]
        regrets = [sc["regret"] for _, sc, _ in group if not math.isnan(sc["regret"]) and not sc["infeasible"]]
        row = {"setting": setting, "label": SETTINGS[setting], "compute": compute, "sweeps": len(group),
               **{f"{k}_share": statistics.fmean(sc[k] for _, sc, _ in group)
                  for k in ("best", "best_objective", "within_0.02", "within_0.05", "infeasible", "no_export")},
               "mean_regret": statistics.fmean(regrets) if regrets else math.nan,
               "mean_runs": statistics.fmean(o.runs for o, _, _ in group),
               "mean_distinct_points": statistics.fmean(o.distinct for o, _, _ in group)}
        if setting in RACES:
            stated = [(o.stated, right, o.race_right) for o, _, right in group if not math.isnan(o.stated)]
            bins = []
            for lo, hi in zip(CALIBRATION_BINS, CALIBRATION_BINS[1:]):
                sel = [x for x in stated if lo <= x[0] < hi or (hi == 1.0 and x[0] == 1.0)]
                bins.append({"from": lo, "to": hi, "sweeps": len(sel),
                             "mean_stated": statistics.fmean(x[0] for x in sel) if sel else math.nan,
                             "right_share": statistics.fmean(x[1] for x in sel) if sel else math.nan,
                             "right_among_candidates_share": statistics.fmean(x[2] for x in sel) if sel else math.nan})
            row["calibration"] = {"bins": bins, "sweeps_stating": len(stated)}
            row["truth_best_in_race_share"] = statistics.fmean(o.in_race for o, _, _ in group)
        rows.append(row)
    counts = {b: bests.count(b) for b in dict.fromkeys(bests)}
    print(f"\nSelection accuracy over {len(grids)} pool / truth splits ({per} sweep seeds each), objective "
          f"{objective}; the splits' truth best (by forget quality): "
          + ", ".join(f"{b} in {n}" for b, n in counts.items()))
    print_rows(rows)
    for r in rows:
        if r["setting"] in RACES and r["compute"] == TARGETS["compute"]:
            print(f"  race {r['setting']} at C={r['compute']}: truth best among the candidates "
                  f"{r['truth_best_in_race_share']:.2f}")
            for b in r["calibration"]["bins"]:
                if b["sweeps"]:
                    print(f"    stated [{b['from']:.2f}, {b['to']:.2f}): {b['sweeps']:>3} sweeps, stated "
                          f"{b['mean_stated']:.2f}, right {b['right_share']:.2f}, right among the candidates "
                          f"{b['right_among_candidates_share']:.2f}")
    return {"objective": objective, "splits": len(grids), "sweeps_per_split": per, "truth_bests": counts,
            "rows": rows, "split_seeds": [{"pool": list(g.pool.seeds), "truth": list(g.truth.seeds)} for g in grids]}


def search(grid: Grid, objective: str, bound: Bound, args: argparse.Namespace) -> dict[str, Any]:
    problem = make_problem(grid, objective, bound, direction(grid, objective))
    found = parallel(functools.partial(search_seed, problem, MAX_TRIALS), range(args.sweeps), args.workers)
    rows = efficiency(problem, found, MAX_TRIALS)
    print_efficiency(grid.provenance["table"], rows, len(grid.points), provenance_tag(grid.provenance), MAX_TRIALS)
    return {"table": grid.provenance["table"], "points": len(grid.points), "objective": objective,
            "truth_best": _name(grid, problem.best), "rows": rows,
            "recorded": _recorded(grid)}


def _name(grid: Grid, point: int) -> str | None:
    return grid.points[point] if point >= 0 else None


def _recorded(grid: Grid) -> dict[str, Any]:
    prov = grid.provenance
    return {"commits": prov["commits"], "config_sha": prov["config_sha"], "same_commit": prov["same_commit"],
            "pool_seeds": list(grid.pool.seeds), "truth_seeds": list(grid.truth.seeds)}


def main() -> None:
    args = parse_args()
    start = time.time()
    grid = load(args.table, args)
    print_provenance(grid)
    bound, target = resolve_bound(grid, args.space)
    tag = provenance_tag(grid.provenance)
    first = make_problem(grid, args.objective[0], bound, direction(grid, args.objective[0]))
    best_by = {o: _name(grid, make_problem(grid, o, bound, direction(grid, o)).best_by_objective)
               for o in args.objective}
    summary = grid_summary(grid, bound, args.objective, first)
    print_grid(summary, tag, args.objective, best_by)
    print_bootstrap(summary)
    contenders = [int(i) for i in np.argsort(-first.truth_quality, kind="stable")[:CONTENDERS]]
    snr, agree = snr_table(grid, contenders, extra=[bound.metric]), agreement(grid, first)
    print_snr(snr, agree, tag, {"truth": len(grid.truth.seeds), "pool": len(grid.pool.seeds)},
              [grid.points[i] for i in contenders])
    cfg = SimConfig(tuple(args.compute), race_k=args.race_k, confidence=args.confidence, adaptive_max=args.adaptive_max)
    results = {o: selection(grid, o, bound, cfg, args) for o in args.objective} if not args.only_splits else {}
    splits = {}
    if args.splits:
        grids = split_grids(args)
        splits = {o: split_selection(grids, o, bound, cfg, args) for o in args.objective}
    searches = [search(grid, args.objective[0], bound, args)]
    for path in args.search_table:
        other = load(path, args)
        searches.append(search(other, args.objective[0], resolve_bound(other, args.space)[0], args))
    res = {"command": " ".join(["python -m bench.selection_accuracy", *sys.argv[1:]]),
           "provenance": grid.provenance, "target_metrics": target, "feasibility": args.feasibility,
           "sim": dataclasses.asdict(cfg) | {"sweeps": args.sweeps},
           "settings": SETTINGS, "targets": TARGETS, "grid": summary | {"recorded": _recorded(grid)},
           "snr": {"rows": snr, "agreement": agree, "contenders": [grid.points[i] for i in contenders],
                   "recorded": _recorded(grid)}, "selection": results, "selection_over_splits": splits,
           "search_efficiency": searches}
    res["wall_seconds"] = round(time.time() - start, 1)
    print(f"\n{res['wall_seconds']:.0f} s ({args.workers} worker(s))")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(strict(res), indent=1, default=_plain))


def strict(x: Any) -> Any:
    """``x`` with every NaN or infinity as None (null): strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: strict(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [strict(v) for v in x]
    return x


def _plain(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


if __name__ == "__main__":
    main()
