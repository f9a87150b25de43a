"""Sweep overhead and throughput, read from a finished sweep directory.

    unlearn-sweep launch satimp --out sweeps_out/demo
    python -m bench.sweep_overhead sweeps_out/demo --json bench/results/sweep_overhead.json

For each trial: its wall time in the sweep (the driver's record, trial start to end) and the time its
worker spent training and evaluating (``train/seconds`` + ``eval/seconds`` of its epochs). Overhead
share = 1 - busy / wall, summed over trials: Ray Tune and Ray Train start-up, model loading,
checkpoints, Optuna and MLflow. Trials per hour = trials / sweep wall time (first start to last end).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for d in sorted((args.dir / "trials").glob("*")):
        led = json.loads((d / "trial.json").read_text())
        res = json.loads((d / "results.json").read_text())
        busy = sum(e.get("train/seconds", 0.0) + e.get("eval/seconds", 0.0) for e in res["epochs"])
        rows.append({"trial": d.name, "wall_s": led["ended"] - led["started"], "busy_s": busy,
                     "started": led["started"], "ended": led["ended"], "epochs": len(res["epochs"])})
    wall = sum(r["wall_s"] for r in rows)
    busy = sum(r["busy_s"] for r in rows)
    span = max(r["ended"] for r in rows) - min(r["started"] for r in rows)
    out = {"trials": len(rows), "trial_wall_s": wall, "busy_s": busy, "overhead_share": 1 - busy / wall,
           "mean_overhead_s_per_trial": (wall - busy) / len(rows), "sweep_span_s": span,
           "trials_per_hour": len(rows) / span * 3600, "rows": rows}
    print(f"{len(rows)} trials: {wall:.0f} s of trial wall time, {busy:.0f} s training + evaluation -> overhead "
          f"{out['overhead_share']:.0%} ({out['mean_overhead_s_per_trial']:.0f} s per trial); "
          f"{out['trials_per_hour']:.0f} trials/hour over {span:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
