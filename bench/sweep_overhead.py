"""Sweep overhead and throughput, read from a finished sweep directory.

    unlearn-sweep launch satimp --out sweeps_out/demo
    python -m bench.sweep_overhead sweeps_out/demo --json bench/results/sweep_overhead.json

For each trial: its wall time in the sweep (the driver's record, trial start to end) and the time its
worker spent training and evaluating (``train/seconds`` + ``eval/seconds`` of its epochs). Overhead
share = 1 - busy / wall, summed over trials. Trials per hour = trials / sweep wall time (first start to
last end). Between trials: the time the sweep's trial slots (the most trials that ran at once) held no
trial (the next trial's process starting, the searcher), and the overhead share counting it,
1 - busy / (span x slots).

Where the rest goes, from each run's ``timeline`` (results.json), summed over trials:
- start-up: trial start -> the worker enters the run (Ray Tune trial, the trial's Ray Train controller,
  worker group and process group, importing the training code), split into Tune (trial start -> the
  trial's driver calls Ray Train: Tune, its callbacks, the driver) and Ray Train (the rest);
- setup: loading the benchmark, tokenizer and model, encoding the data (the run itself);
- checkpoint + report: each epoch's sharded checkpoint and its report to Ray Train / Tune (a trial run in
  its own process without a scheduler hands its reports to a thread: ~0 here, see TuneReportThread);
- other in the loop: per-epoch bookkeeping between training and evaluation;
- finish: gathering and saving the unlearned model;
- teardown: results written -> the trial's end (Ray Train shutdown, Tune and MLflow bookkeeping).
Start-up and teardown are the sweep machinery (Ray, Optuna, MLflow); setup, checkpoints and finish are
the run's own work outside training and evaluation. Last, the same shares over the trials after the first
of each slot: with Tune reusing trial processes, those ran in a warm process.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

PARTS = ("startup", "setup", "checkpoint_report", "loop_other", "finish", "teardown")


def breakdown(led: dict, res: dict, busy: float) -> dict[str, float] | None:
    tl = res.get("timeline") or {}
    if led.get("starts", 1) != 1 or not {"setup_start", "loop_start", "loop_end", "finish_end"} <= tl.keys():
        return None  # restarted trials (or results of an older version) have no single timeline
    loop = tl["loop_end"] - tl["loop_start"]
    # runs of an older version have no fit_start: their start-up stays whole
    split = ({"startup_tune": tl["fit_start"] - led["started"], "startup_ray_train": tl["setup_start"] - tl["fit_start"]}
             if "fit_start" in tl else {})
    return {**split, "startup": tl["setup_start"] - led["started"], "setup": tl["loop_start"] - tl["setup_start"],
            "checkpoint_report": tl["checkpoint_report_s"], "loop_other": loop - busy - tl["checkpoint_report_s"],
            "finish": tl["finish_end"] - tl["loop_end"], "teardown": led["ended"] - tl["finish_end"]}


def peak_concurrency(rows: list[dict]) -> int:
    """The most trials that ran at the same time."""
    events = sorted([(r["started"], 1) for r in rows] + [(r["ended"], -1) for r in rows], key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for d in sorted((args.dir / "trials").glob("*")):
        if not (d / "results.json").is_file():
            continue  # a failed trial: no run to measure
        led = json.loads((d / "trial.json").read_text())
        res = json.loads((d / "results.json").read_text())
        busy = sum(e.get("train/seconds", 0.0) + e.get("eval/seconds", 0.0) for e in res["epochs"])
        rows.append({"trial": d.name, "wall_s": led["ended"] - led["started"], "busy_s": busy,
                     "started": led["started"], "ended": led["ended"], "epochs": len(res["epochs"]),
                     "parts_s": breakdown(led, res, busy)})
    wall = sum(r["wall_s"] for r in rows)
    busy = sum(r["busy_s"] for r in rows)
    span = max(r["ended"] for r in rows) - min(r["started"] for r in rows)
    timed = [r for r in rows if r["parts_s"] is not None]
    parts = {p: sum(r["parts_s"][p] for r in timed) for p in PARTS}
    timed_wall = sum(r["wall_s"] for r in timed)
    split_rows = [r for r in timed if "startup_tune" in r["parts_s"]]
    split = {q: sum(r["parts_s"][q] for r in split_rows) for q in ("startup_tune", "startup_ray_train")} if split_rows else {}
    # Between trials: the sweep's trial slots (the most trials that ran at once) over its span, less the
    # trials' wall time, is time no trial held a slot (starting the next trial's process, searching).
    slots = peak_concurrency(rows)
    between = span * slots - wall
    out = {"trials": len(rows), "trial_wall_s": wall, "busy_s": busy, "overhead_share": 1 - busy / wall,
           "mean_overhead_s_per_trial": (wall - busy) / len(rows), "sweep_span_s": span,
           "slots": slots, "between_trials_s": between, "overhead_share_with_between": 1 - busy / (span * slots),
           "trials_per_hour": len(rows) / span * 3600,
           "parts_s": parts, "startup_split_s": split, "parts_share": {p: v / timed_wall for p, v in parts.items()} if timed else {},
           "machinery_share": (parts["startup"] + parts["teardown"]) / timed_wall if timed else None,
           "rows": rows}
    print(f"{len(rows)} trials: {wall:.0f} s of trial wall time, {busy:.0f} s training + evaluation -> overhead "
          f"{out['overhead_share']:.0%} ({out['mean_overhead_s_per_trial']:.0f} s per trial); "
          f"{out['trials_per_hour']:.0f} trials/hour over {span:.0f} s")
    print(f"between trials ({slots} slot{'s' if slots > 1 else ''} over the span, no trial in it): {between:.0f} s; "
          f"counting it: overhead {out['overhead_share_with_between']:.1%}")
    if timed:
        print(f"where the {timed_wall:.0f} s of wall time of {len(timed)} trials went (s per trial, share):")
        print(f"  {'training + evaluation':<24} {sum(r['busy_s'] for r in timed) / len(timed):7.1f}  "
              f"{sum(r['busy_s'] for r in timed) / timed_wall:5.1%}")
        for p in PARTS:
            print(f"  {p.replace('_', ' + ' if p == 'checkpoint_report' else ' '):<24} {parts[p] / len(timed):7.1f}  "
                  f"{parts[p] / timed_wall:5.1%}")
            if p == "startup" and split:
                for q, label in (("startup_tune", "Tune + trial driver"), ("startup_ray_train", "Ray Train run")):
                    print(f"    {label:<22} {split[q] / len(split_rows):7.1f}  (s per trial, {len(split_rows)} trials)")
        print(f"sweep machinery (Ray, Optuna, MLflow: start-up + teardown): {out['machinery_share']:.0%} of the wall time")
        # With reused trial processes (Tune reuse_actors) only the first trial of each slot starts a process
        # and imports the training code: the later ones show what a trial costs in a warm process.
        warm = sorted(timed, key=lambda r: r["started"])[slots:]
        if warm:
            w_wall, w_busy = sum(r["wall_s"] for r in warm), sum(r["busy_s"] for r in warm)
            w_ray = sum(r["parts_s"][p] for r in warm for p in ("startup", "checkpoint_report", "teardown"))
            w_parts = {p: sum(r["parts_s"][p] for r in warm) / len(warm) for p in PARTS}
            out["warm"] = {"trials": len(warm), "overhead_share": 1 - w_busy / w_wall,
                           "ray_optuna_mlflow_share": w_ray / w_wall, "parts_s_per_trial": w_parts}
            print(f"the {len(warm)} trials after the first of each slot (a warm process when reused): overhead "
                  f"{out['warm']['overhead_share']:.1%}, of which start-up + reports/checkpoints + teardown "
                  f"{out['warm']['ray_optuna_mlflow_share']:.1%}; s per trial: "
                  + ", ".join(f"{p.replace('_', ' ')} {v:.2f}" for p, v in w_parts.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
