"""Ray Train on this machine: per-worker parameter memory and step time with FSDP on 1 vs 2 workers,
and the start-up overhead of a Ray Train run, on workers or in this process (``scaling.launcher=local``).

    python -m bench.ray_train --json bench/results/ray_train.json

Uses the embedded default setup (tiny model, generated benchmark; prepared once, cached). Overhead of a
run = its wall time minus the time its workers spent training and evaluating (``train/seconds`` +
``eval/seconds`` summed over epochs): Ray Train controller and worker start-up, process groups, model
loading, checkpoint writes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def one(cfg, prepared, out: Path) -> dict:
    from sweeps.ray_run import run_unlearning

    t0 = time.perf_counter()
    res = run_unlearning(cfg, out, prepared=prepared, log=lambda s: None)
    wall = time.perf_counter() - t0
    busy = sum(h.get("train/seconds", 0.0) + h.get("eval/seconds", 0.0) for h in res.history)
    return {"workers": cfg.scaling.workers, "strategy": cfg.scaling.resolved_strategy,
            "launcher": cfg.scaling.resolved_launcher, "wall_s": wall,
            "train_s_per_epoch": sum(h["train/seconds"] for h in res.history) / len(res.history),
            "busy_s": busy, "overhead_s": wall - busy,
            "params_local_max": res.history[0]["params/local_max"], "final_loss": res.metrics["train/loss"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    from sweeps.cluster import ensure_ray
    from unlearn.train.config import load_run_config
    from unlearn.train.prepare import prepare

    ensure_ray()
    base = load_run_config(None, [f"optim.epochs={args.epochs}"])
    prepared = prepare(base, log=lambda s: None)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers, strategy, launcher in ((1, "fsdp", "ray_train"), (2, "fsdp", "ray_train"),
                                            (1, "single", "ray_train"), (1, "single", "local")):
            cfg = load_run_config(None, [f"optim.epochs={args.epochs}", f"scaling.workers={workers}",
                                         f"scaling.strategy={strategy}", f"scaling.launcher={launcher}"])
            rows.append(one(cfg, prepared, Path(tmp) / f"w{workers}-{strategy}-{launcher}"))
    for r in rows:
        print(f"{r['workers']} worker(s) {r['strategy']:<6} {r['launcher']:<9}: params/worker {r['params_local_max']:>9.0f}, "
              f"train {r['train_s_per_epoch']:.2f} s/epoch, run wall {r['wall_s']:.1f} s of which "
              f"overhead {r['overhead_s']:.1f} s")
    one_w, two_w = rows[0], rows[1]
    summary = {"param_ratio_2_vs_1": two_w["params_local_max"] / one_w["params_local_max"],
               "step_time_ratio_2_vs_1": two_w["train_s_per_epoch"] / one_w["train_s_per_epoch"]}
    summary["overhead_ratio_local_vs_ray_train"] = rows[3]["overhead_s"] / rows[2]["overhead_s"]
    summary["same_final_loss_local_vs_ray_train"] = rows[3]["final_loss"] == rows[2]["final_loss"]
    print(f"2 vs 1 worker: parameters per worker x{summary['param_ratio_2_vs_1']:.2f}, "
          f"epoch time x{summary['step_time_ratio_2_vs_1']:.2f}")
    print(f"1 worker, local vs Ray Train workers: overhead x{summary['overhead_ratio_local_vs_ray_train']:.2f}, "
          f"same final loss: {summary['same_final_loss_local_vs_ray_train']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
