"""Selection accuracy with seed replicates: how often a sweep exports a point within noise of the best.

    python -m bench.selection_accuracy --json bench/results/selection_accuracy.json

1. The table: every (beta1, beta2) of a 4 x 4 grid (values from ``bench.search_efficiency``'s axes) is run
   for real with 10 seeds (``seed=0..9``; SatImp-GD, the embedded default run config, generated
   benchmark, no per-epoch evaluation, no generation), in this process; each run's final forget quality
   is recorded (``bench/results/selection_accuracy.table.json``; ``--table`` reuses it).
2. Sweeps simulated on the table, for ``--sweeps`` sweep seeds and total computes C runs: the product's
   sampler (``sweeps.search.tpe_sampler`` for a sweep of C / R trials), beta1 and beta2 as ordered
   integer axes (as ``bench.search_efficiency``). A trial of a point observes the mean over R of the
   point's 10 recorded seeds, the R seeds drawn without replacement by a generator seeded with
   ``derive_trial_seed(sweep seed, point index)``: like the product's ``replicate_seeds``, a function of
   the sweep seed and the point only, so a point sampled twice observes the same value (``by_point``;
   ``by_trial`` draws them per trial number instead, both reported). The export is the trial with the
   best observed value (first on ties). The sweep's top 5 (distinct points, by observed value) are
   re-evaluated on all 10 seeds; the export is *within noise* when its 10-seed mean is at least the
   lower end of the 95 % t interval (``sweeps.record.interval``) of the best of those five over its 10
   seeds. Also counted: the export is the grid's true best point (best 10-seed mean), and the regret
   (grid best 10-seed mean minus the export's).
3. Search efficiency on replicate means: trials (and runs = trials x R) the product's TPE (sweep of as
   many trials as the grid has points) needs to first sample the grid's true best point, R = 1 vs R = 3,
   random search for comparison; median over the sweep seeds, as a share of the grid. Target <= 1/3.

The observations and the 10-seed truth share seeds: an R = 3 observation is 3 of the 10 values that
make the truth, so the truth is not independent of what the sweep saw.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.search_efficiency import BETA1, BETA2, axes

GRID_BETA1 = (BETA1[1], BETA1[2], BETA1[4], BETA1[5])  # 1, 2, 5, 8
GRID_BETA2 = (BETA2[0], BETA2[2], BETA2[3], BETA2[5])  # 0, 0.1, 0.25, 1
GRIDS = {"4x4": (GRID_BETA1, GRID_BETA2), "6x6": (BETA1, BETA2)}  # 6x6: search_efficiency's whole grid
SEEDS = tuple(range(10))
TOP = 5
MAX_TRIALS = 200
Table = dict[str, list[float]]  # "beta1,beta2" -> final forget quality per seed (SEEDS order)


def record_table(path: Path, overrides: list[str], seeds: tuple[int, ...] = SEEDS,
                 grid: tuple[tuple[float, ...], tuple[float, ...]] = GRIDS["4x4"]) -> Table:
    """Runs every grid point with every seed; writes the table to ``path`` after each point."""
    from unlearn.train.config import load_run_config
    from unlearn.train.run import run_local

    table: Table = {}
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for b1, b2 in itertools.product(*grid):
            values = []
            for s in seeds:
                cfg = load_run_config(None, [*overrides, f"method.beta1={b1}", f"method.beta2={b2}", f"seed={s}",
                                             "epoch_eval=false", "eval.rouge=false"])  # FQ needs no generation
                values.append(float(run_local(cfg, Path(tmp) / f"{b1}-{b2}-{s}", log=lambda m: None)
                                    .metrics["forget_quality"]))
            table[f"{b1},{b2}"] = values
            print(f"beta1={b1} beta2={b2}: forget_quality {[round(v, 4) for v in values]} "
                  f"({time.time() - start:.0f} s)", flush=True)
            save_table(path, table, overrides, seeds, time.time() - start)
    return table


def save_table(path: Path, table: Table, overrides: list[str], seeds: tuple[int, ...], seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"table": table, "overrides": overrides, "seeds": list(seeds),
                                "metric": "forget_quality", "record_seconds": round(seconds, 1)}, indent=1))


def mean_of(values: list[float]) -> float:
    """The product's replicate mean (``sweeps.record.aggregate``) of one metric's values."""
    from sweeps.record import aggregate

    return aggregate([{"v": v} for v in values], "mean")["v"]


def truth(table: Table) -> dict[str, float]:
    """Each point's 10-seed mean: the truth a sweep is scored against."""
    return {k: mean_of(v) for k, v in table.items()}


def drawn_seeds(sweep_seed: int, key: int, replicates: int, n_seeds: int) -> list[int]:
    """The R distinct seed indices a trial observes, from the sweep seed and ``key`` (point index or trial number)."""
    from sweeps.space.sampling import derive_trial_seed

    return random.Random(derive_trial_seed(sweep_seed, key)).sample(range(n_seeds), replicates)


def simulate(table: Table, sweep_seed: int, *, replicates: int, sampler_trials: int, max_trials: int,
             seeds_by: str, stop: Callable[[str], bool] = lambda k: False,
             sampler: str = "product") -> list[tuple[str, float]]:
    """One sweep on the table: (point, observed R-seed mean) per trial, in order; ends after
    ``max_trials`` or on the first trial whose point satisfies ``stop``."""
    import optuna

    from sweeps.search import tpe_sampler

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    b1s, b2s = axes(table)
    chosen = (tpe_sampler(sweep_seed, sampler_trials) if sampler == "product"
              else optuna.samplers.RandomSampler(seed=sweep_seed))
    study = optuna.create_study(direction="maximize", sampler=chosen)
    trials: list[tuple[str, float]] = []
    for n in range(max_trials):
        trial = study.ask()
        i, j = trial.suggest_int("beta1_index", 0, len(b1s) - 1), trial.suggest_int("beta2_index", 0, len(b2s) - 1)
        key = f"{b1s[i]},{b2s[j]}"
        values = table[key]
        seeds = drawn_seeds(sweep_seed, i * len(b2s) + j if seeds_by == "point" else n, replicates, len(values))
        observed = mean_of([values[s] for s in seeds])
        study.tell(trial, observed)
        trials.append((key, observed))
        if stop(key):
            break
    return trials


def score_sweep(table: Table, true: dict[str, float], trials: list[tuple[str, float]]) -> dict[str, float]:
    """The export (best observed, first on ties) against the 10-seed re-evaluation of the sweep's top 5."""
    from sweeps.record import interval

    export = max(trials, key=lambda t: t[1])[0]  # max keeps the first of equal values
    ranked = sorted(trials, key=lambda t: -t[1])  # stable: ties keep trial order
    top = list(dict.fromkeys(k for k, _ in ranked))[:TOP]
    best_top = max(top, key=lambda k: true[k])
    low = interval(table[best_top], "mean")[0]
    grid_best = max(true.values())
    return {"within_noise": float(true[export] >= low), "grid_best": float(true[export] == grid_best),
            "top_has_grid_best": float(grid_best in (true[k] for k in top)),
            "regret": grid_best - true[export], "distinct_points": float(len({k for k, _ in trials}))}


def selection(table: Table, sweeps: int, compute: int, replicates: int, seeds_by: str) -> dict[str, float]:
    """Selection figures over ``sweeps`` sweep seeds at a total compute of ``compute`` runs."""
    true = truth(table)
    n = compute // replicates
    scores = [score_sweep(table, true, simulate(table, s, replicates=replicates, sampler_trials=n, max_trials=n,
                                                seeds_by=seeds_by)) for s in range(sweeps)]
    out = {f"{m}_share" if m != "regret" else "mean_regret": statistics.fmean(sc[m] for sc in scores)
           for m in ("within_noise", "grid_best", "top_has_grid_best", "regret")}
    out["mean_distinct_points"] = statistics.fmean(sc["distinct_points"] for sc in scores)
    return {"compute_runs": compute, "replicates": replicates, "trials": n, **out}


def search_efficiency(table: Table, sweeps: int, replicates: int, seeds_by: str, sampler: str) -> dict:
    """Trials (and runs) a sampler needs to first sample the grid's true best point, per sweep seed."""
    true = truth(table)
    best = max(true.values())
    runs = [simulate(table, s, replicates=replicates, sampler_trials=len(table), max_trials=MAX_TRIALS,
                     seeds_by=seeds_by, sampler=sampler, stop=lambda k: true[k] == best) for s in range(sweeps)]
    counts = [len(trials) for trials in runs]  # MAX_TRIALS where never reached (counted in not_reached)
    median = statistics.median(counts)
    return {"sampler": sampler, "replicates": replicates, "trials_to_best": counts, "median_trials": median,
            "mean_trials": statistics.fmean(counts), "worst_trials": max(counts),
            "median_runs": median * replicates, "trials_share_of_grid": median / len(table),
            "runs_share_of_grid": median * replicates / len(table),
            "not_reached": sum(true[trials[-1][0]] != best for trials in runs)}


def grid_summary(table: Table) -> dict:
    """The grid's truth: 10-seed means with their 95 % t intervals, the best point, how many tie with it
    and how many lie within its interval (the share a random export would be within noise)."""
    from sweeps.record import interval

    true = truth(table)
    best = max(true.values())
    best_points = [k for k, v in true.items() if v == best]
    low = interval(table[best_points[0]], "mean")[0]
    within = [k for k, v in true.items() if v >= low]
    return {"points": len(table), "best_value": best, "best_points": best_points, "best_low": low,
            "within_noise_of_best": within, "within_noise_share": len(within) / len(table),
            "distinct_means": len(set(true.values())), "means": true,
            "intervals": {k: interval(v, "mean") for k, v in table.items()},
            "seed_sd_median": statistics.median(statistics.stdev(v) for v in table.values())}


def print_grid(table: Table, grid: dict) -> None:
    b1s, b2s = axes(table)
    print(f"10-seed mean forget quality (rows beta1, columns beta2 = {', '.join(f'{b:g}' for b in b2s)}):")
    for b1 in b1s:
        row = [grid["means"][f"{b1},{b2}"] for b2 in b2s]
        print(f"  {b1:>4g} | " + "  ".join(f"{v:.4f}" for v in row))
    print(f"grid best {grid['best_value']:.4f} at {grid['best_points']}; 95 % t interval low {grid['best_low']:.4f}: "
          f"{len(grid['within_noise_of_best'])} of {grid['points']} points within it; {grid['distinct_means']} "
          f"distinct means; median seed sd {grid['seed_sd_median']:.4f}")


def print_results(rule: str, rows: list[dict], search: list[dict], grid_size: int) -> None:
    print(f"\nseeds drawn per {rule}:")
    print("  C runs  R  trials  within noise  export = grid best  top 5 has it  mean regret  distinct points")
    for r in rows:
        print(f"  {r['compute_runs']:>6}  {r['replicates']}  {r['trials']:>6}  {r['within_noise_share']:>12.2f}  "
              f"{r['grid_best_share']:>18.2f}  {r['top_has_grid_best_share']:>12.2f}  {r['mean_regret']:>11.4f}  "
              f"{r['mean_distinct_points']:>15.1f}")
    print(f"  trials to first sample the true best point (grid of {grid_size}):")
    for s in search:
        print(f"    {s['sampler']:<7} R={s['replicates']}: median {s['median_trials']} trials "
              f"({s['trials_share_of_grid']:.2f} of the grid), {s['median_runs']} runs "
              f"({s['runs_share_of_grid']:.2f}), mean {s['mean_trials']:.1f}, worst {s['worst_trials']}, "
              f"not reached in {MAX_TRIALS}: {s['not_reached']}")


def evaluate(table: Table, sweeps: int, computes: list[int], rule: str) -> dict:
    rows = [selection(table, sweeps, c, r, rule) for c in computes for r in (1, 3)]
    search = [search_efficiency(table, sweeps, r, rule, sampler) for sampler in ("product", "random") for r in (1, 3)]
    print_results(rule, rows, search, len(table))
    return {"selection": rows, "search_efficiency": search}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--set", nargs="*", default=["data.benchmark=generated"], help="run-config overrides of the table")
    ap.add_argument("--table", type=Path, help="reuse a recorded table (JSON) instead of running the grid")
    ap.add_argument("--sweeps", type=int, default=200, help="sweep seeds simulated")
    ap.add_argument("--compute", type=int, nargs="+", default=[12, 18, 24], help="total runs per sweep (x 3)")
    ap.add_argument("--grid", choices=sorted(GRIDS), default="4x4", help="beta1 x beta2 grid to record")
    ap.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds per grid point to record (0..N-1)")
    args = ap.parse_args()
    if any(c % 3 for c in args.compute):
        raise SystemExit(f"--compute {args.compute}: each must be a multiple of 3 (R = 3 at equal compute)")
    start = time.time()
    if args.table:
        recorded = json.loads(args.table.read_text())
    else:
        path = args.json.with_suffix(".table.json") if args.json else Path("selection_accuracy.table.json")
        record_table(path, args.set, tuple(range(args.seeds)), GRIDS[args.grid])
        recorded = json.loads(path.read_text())
    table = recorded["table"]
    grid = grid_summary(table)
    print_grid(table, grid)
    res = {"command": " ".join(["python -m bench.selection_accuracy", *sys.argv[1:]]),
           "settings": {"beta1": axes(table)[0], "beta2": axes(table)[1], "seeds": recorded["seeds"],
                        "overrides": recorded["overrides"], "sweeps": args.sweeps, "compute_runs": args.compute,
                        "top": TOP, "sampler": "sweeps.search.tpe_sampler(sweep_seed, trials)",
                        "within_noise_rule": "export's 10-seed mean >= low end of the 95 % t interval "
                                             "(sweeps.record.interval) of the 10 seed values of the best "
                                             "(by 10-seed mean) of the sweep's top 5"},
           "record_seconds": recorded.get("record_seconds"), "grid": grid,
           "by_point": evaluate(table, args.sweeps, args.compute, "point"),
           "by_trial": evaluate(table, args.sweeps, args.compute, "trial"), "table": table}
    res["wall_seconds"] = round(time.time() - start, 1)
    print(f"\n{res['wall_seconds']:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
