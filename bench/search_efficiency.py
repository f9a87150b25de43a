"""Search efficiency on the generated benchmark: TPE vs a fixed beta1 x beta2 grid, and ASHA's savings.

    python -m bench.search_efficiency --json bench/results/search_efficiency.json

1. The grid: every (beta1, beta2) of a 4 x 4 grid is run for real (SatImp-GD, embedded default setup,
   per-epoch evaluation), in this process; the per-epoch forget quality of each run is recorded.
2. TPE: Optuna's TPESampler searches the same grid (categorical beta1, beta2) with the recorded final
   forget quality as objective; the number of trials it needs to reach the grid's best value is
   counted, for 10 sampler seeds (median reported). Target: at most 1/3 of the grid size.
3. ASHA: a real Ray Tune run with ASHAScheduler (time_attr=epoch, grace 2, reduction 2) over the 16 grid
   points, whose trainable replays each point's recorded per-epoch forget quality; the epochs it runs
   are compared with the 16 x epochs of the full grid, and its best point with the grid's.
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
BETA1 = (0.5, 2.0, 5.0, 8.0)
BETA2 = (0.0, 0.1, 0.5, 1.0)


def run_grid(epochs: int) -> dict[str, list[float]]:
    from unlearn.train.config import load_run_config
    from unlearn.train.run import run_local

    curves = {}
    with tempfile.TemporaryDirectory() as tmp:
        for b1, b2 in itertools.product(BETA1, BETA2):
            cfg = load_run_config(None, [f"method.beta1={b1}", f"method.beta2={b2}", f"optim.epochs={epochs}",
                                         "epoch_eval=true", "eval.rouge=false"])  # FQ needs no generation
            res = run_local(cfg, Path(tmp) / f"{b1}-{b2}", log=lambda s: None)
            curves[f"{b1},{b2}"] = [h["forget_quality"] for h in res.history]
            print(f"beta1={b1} beta2={b2}: forget_quality per epoch {[round(v, 3) for v in curves[f'{b1},{b2}']]}")
    return curves


def tpe_trials_to_best(final: dict[str, float], seed: int) -> int:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    best = max(final.values())
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=4))
    for n in range(1, 200):
        trial = study.ask()
        key = f"{trial.suggest_categorical('beta1', BETA1)},{trial.suggest_categorical('beta2', BETA2)}"
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
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--curves", type=Path, help="reuse recorded grid curves (JSON) instead of re-running the grid")
    args = ap.parse_args()
    curves = json.loads(args.curves.read_text())["curves"] if args.curves else run_grid(args.epochs)
    if args.json and not args.curves:  # keep the expensive grid even if a later step fails
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.with_suffix(".curves.json").write_text(json.dumps({"curves": curves}, indent=1))
    final = {k: v[-1] for k, v in curves.items()}
    best_value = max(final.values())
    grid_best = [k for k, v in final.items() if v == best_value]
    counts = [tpe_trials_to_best(final, s) for s in range(10)]
    res = {"grid_size": len(final), "grid_best_value": best_value, "grid_best_points": grid_best,
           "tpe_trials_to_best": counts, "tpe_median": statistics.median(counts),
           "tpe_share_of_grid": statistics.median(counts) / len(final), "asha": asha(curves, args.epochs),
           "curves": curves}
    res["asha"]["same_best"] = res["asha"]["asha_best"] in grid_best
    print(f"grid: {len(final)} points, best forget_quality {best_value:.4g} at {grid_best}")
    print(f"TPE trials to reach it (10 seeds): {counts}, median {res['tpe_median']} "
          f"= {res['tpe_share_of_grid']:.2f} of the grid")
    a = res["asha"]
    print(f"ASHA: {a['epochs_run']} of {a['epochs_full']} epochs ({a['saved_share']:.0%} saved); best {a['asha_best']} "
          f"{'is' if a['same_best'] else 'is not'} among the grid's best")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
