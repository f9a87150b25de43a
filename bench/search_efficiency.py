"""Search efficiency on the generated benchmark: TPE vs a fixed beta1 x beta2 grid, and ASHA's savings.

    python -m bench.search_efficiency --json bench/results/search_efficiency.json

1. The grid: every (beta1, beta2) of a 6 x 6 grid is run for real (SatImp-GD, embedded default setup
   with a larger forget set, ``--set`` overrides, per-epoch evaluation), in this process; the per-epoch
   forget quality of each run is recorded. Forget quality is a KS p-value over the forget questions:
   with the default 16 (2 authors x 8) it takes a handful of values and most grid points tie, so the
   grid runs with 60 authors (forget10 = 6 authors, 48 questions) by default.
2. TPE: Optuna's TPESampler with the product's own settings (``sweeps.search.tpe_sampler`` for a sweep of
   as many trials as the grid has points) searches the grid with the recorded final forget quality as
   objective. beta1 and beta2 are ordered axes (an integer index into the grid values), as the shipped
   spaces treat them (uniform ranges), not unordered categories. Counted: the trials it needs to reach
   the grid's best value, for 20 sampler seeds (median reported), for the product's sampler, for
   independent (univariate) TPE and for random search. Target: at most 1/3 of the grid size.
3. ASHA: a real Ray Tune run with ASHAScheduler (time_attr=epoch, grace 2, reduction 2) over the 36 grid
   points, whose trainable replays each point's recorded per-epoch forget quality; the epochs it runs
   are compared with the 36 x epochs of the full grid, and its best point with the grid's.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import tempfile
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
BETA1 = (0.5, 1.0, 2.0, 3.5, 5.0, 8.0)
BETA2 = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


def run_grid(epochs: int, overrides: list[str], beta1: tuple[float, ...], beta2: tuple[float, ...]) -> dict[str, list[float]]:
    from unlearn.train.config import load_run_config
    from unlearn.train.run import run_local

    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b1, b2 in itertools.product(beta1, beta2):
            cfg = load_run_config(None, [*overrides, f"method.beta1={b1}", f"method.beta2={b2}", f"optim.epochs={epochs}",
                                         "epoch_eval=true", "eval.rouge=false"])  # FQ needs no generation
            res = run_local(cfg, Path(tmp) / f"{b1}-{b2}", log=lambda s: None)
            curves[f"{b1},{b2}"] = [h["forget_quality"] for h in res.history]
            print(f"beta1={b1} beta2={b2}: forget_quality per epoch {[round(v, 4) for v in curves[f'{b1},{b2}']]}",
                  flush=True)
    return curves


def axes(curves: dict[str, list[float]]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The grid's beta1 and beta2 values, sorted, from the curves' keys ("beta1,beta2")."""
    pts = [tuple(float(x) for x in k.split(",")) for k in curves]
    return tuple(sorted({p[0] for p in pts})), tuple(sorted({p[1] for p in pts}))


def trials_to_best(final: dict[str, float], seed: int, sampler_name: str) -> int:
    """Trials a sampler ("product": the sweep's TPE, "independent": univariate TPE, "random") needs to
    first sample a point whose recorded value equals the grid's best."""
    import optuna

    from sweeps.search import tpe_sampler, tpe_startup_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = max(final.values())
    b1s, b2s = axes(final)
    if sampler_name == "product":
        sampler = tpe_sampler(seed, len(final))
    elif sampler_name == "independent":
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=tpe_startup_trials(len(final)),
                                             multivariate=False)
    else:
        sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for n in range(1, 200):
        trial = study.ask()
        key = f"{b1s[trial.suggest_int('beta1_index', 0, len(b1s) - 1)]},{b2s[trial.suggest_int('beta2_index', 0, len(b2s) - 1)]}"
        study.tell(trial, final[key])
        if final[key] >= best:
            return n
    return 200


def asha(curves: dict[str, list[float]], epochs: int) -> dict:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def replay(config):
        for e, v in enumerate(curves[config["point"]], start=1):
            tune.report({"epoch": e, "forget_quality": v})

    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            tuner = tune.Tuner(replay, param_space={"point": tune.grid_search(list(curves))},
                               tune_config=tune.TuneConfig(scheduler=ASHAScheduler(
                                   time_attr="epoch", metric="forget_quality", mode="max", max_t=epochs,
                                   grace_period=2, reduction_factor=2), max_concurrent_trials=4),
                               run_config=tune.RunConfig(storage_path=tmp, verbose=0))
            grid = tuner.fit()
            ran = sum(int(r.metrics["epoch"]) for r in grid)
            best = grid.get_best_result(metric="forget_quality", mode="max", scope="last").config["point"]
    finally:
        ray.shutdown()
    return {"epochs_run": ran, "epochs_full": len(curves) * epochs, "saved_share": 1 - ran / (len(curves) * epochs),
            "asha_best": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--set", nargs="*", default=["data.num_authors=60"], help="run-config overrides of the grid")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--curves", type=Path, help="reuse recorded grid curves (JSON) instead of re-running the grid")
    args = ap.parse_args()
    curves = json.loads(args.curves.read_text())["curves"] if args.curves else run_grid(args.epochs, args.set, BETA1, BETA2)
    if args.json and not args.curves:  # keep the expensive grid even if a later step fails
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.with_suffix(".curves.json").write_text(json.dumps({"curves": curves, "overrides": args.set,
                                                                     "epochs": args.epochs}, indent=1))
    final = {k: v[-1] for k, v in curves.items()}
    best_value = max(final.values())
    grid_best = [k for k, v in final.items() if v == best_value]
    counts = [trials_to_best(final, s, "product") for s in range(args.seeds)]
    independent = [trials_to_best(final, s, "independent") for s in range(args.seeds)]
    rand = [trials_to_best(final, s, "random") for s in range(args.seeds)]
    res = {"grid_size": len(final), "grid_best_value": best_value, "grid_best_points": grid_best,
           "overrides": args.set, "epochs": args.epochs,
           "tpe_trials_to_best": counts, "tpe_median": statistics.median(counts),
           "tpe_share_of_grid": statistics.median(counts) / len(final),
           "independent_tpe_trials_to_best": independent, "independent_tpe_median": statistics.median(independent),
           "random_trials_to_best": rand, "random_median": statistics.median(rand),
           "asha": asha(curves, len(next(iter(curves.values())))), "curves": curves}
    res["asha"]["same_best"] = res["asha"]["asha_best"] in grid_best
    print(f"grid: {len(final)} points, best forget_quality {best_value:.4g} at {grid_best}")
    print(f"TPE (the product's sampler) trials to reach it ({args.seeds} seeds): {counts}, median "
          f"{res['tpe_median']} = {res['tpe_share_of_grid']:.2f} of the grid")
    print(f"independent TPE: {independent}, median {res['independent_tpe_median']} "
          f"= {res['independent_tpe_median'] / len(final):.2f} of the grid")
    print(f"random search: {rand}, median {res['random_median']} = {res['random_median'] / len(final):.2f} of the grid")
    a = res["asha"]
    print(f"ASHA: {a['epochs_run']} of {a['epochs_full']} epochs ({a['saved_share']:.0%} saved); best {a['asha_best']} "
          f"{'is' if a['same_best'] else 'is not'} among the grid's best")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
