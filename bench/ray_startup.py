"""Where a Ray Train run's fixed start-up goes: the per-trial cost that dominates short sweep trials.

    python -m bench.ray_startup --runs 4 --json bench/results/ray_startup.json          # CPU
    python -m bench.ray_startup --runs 4 --gpu --json bench/results/ray_startup_gpu.json  # one GPU

Each run is what a sweep trial's driver does (``sweeps.cluster.ensure_ray``, then a one-worker
``TorchTrainer.fit``), with a training function that only imports the training code and reports once.
Ray's own task timeline (``ray.timeline()``) then splits the run, per run:

- controller process: ``fit()`` called -> the controller actor's constructor starts (a new process);
- controller init: its constructor (unpickling the trainer: importing Ray Train and torch);
- worker group: placement group, and the new processes of the synchronisation actor, placement-group
  cleaner and worker, up to the worker's ``init_train_context``;
- worker context: ``init_train_context`` (unpickling the training function: importing torch there);
- backend: process group, environment, dataset manager, up to ``run_train_fn``;
- training code import: the training function importing ``sweeps.ray_run`` (this project's code:
  transformers, the losses, ...), timed inside the worker;
- the function's end -> ``fit()`` returns: the controller noticing, shutting the group down.
The first run of a cluster also starts Ray Train's cluster-wide helpers: reported apart, the median is
over the other runs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

PHASES = ("controller_process", "controller_init", "worker_group", "worker_context", "backend",
          "training_code_import", "finish")


def train_fn(config: dict) -> None:
    """The run's training function: import the training code, report once."""
    import ray.train

    t0 = time.time()
    import sweeps.ray_run  # noqa: F401  (what a real worker imports before it loads data and model)

    t1 = time.time()
    if config["gpu"]:
        import torch

        torch.zeros(1, device=ray.train.torch.get_device())  # the CUDA context, as a real run creates it
    ray.train.report({"imported_s": t1 - t0})
    Path(config["out"]).write_text(json.dumps({"entry": t0, "imported": t1}))


def _events(start: float) -> dict[str, tuple[float, float]]:
    """First start and end (s since the epoch) of each Ray task named in the timeline after ``start``."""
    import ray

    out: dict[str, tuple[float, float]] = {}
    for e in ray.timeline():
        if e.get("ph") != "X" or not str(e.get("cat", "")).startswith("task::"):
            continue
        ts, dur = e["ts"] / 1e6, e["dur"] / 1e6
        name = e["cat"].removeprefix("task::")
        if ts >= start and (name not in out or ts < out[name][0]):
            out[name] = (ts, ts + dur)
    return out


def one_run(i: int, storage: Path, gpu: bool) -> dict[str, float]:
    import ray.train
    from ray.train.torch import TorchTrainer

    t0 = time.time()
    stamps = storage / f"startup-{i}.json"
    TorchTrainer(train_fn, train_loop_config={"gpu": gpu, "out": str(stamps)},
                 scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=gpu),
                 run_config=ray.train.RunConfig(name=f"startup-{i}", storage_path=str(storage))).fit()
    t_end = time.time()
    ev = _events(t0)
    ctrl, ctx, run = ev["TrainController.__init__"], ev["RayTrainWorker.init_train_context"], ev["RayTrainWorker.run_train_fn"]
    worker = json.loads(stamps.read_text())  # (V2's Result.metrics holds only reports with a checkpoint)
    entry, imported = run[0], run[0] + worker["imported"] - worker["entry"]
    return {"controller_process": ctrl[0] - t0, "controller_init": ctrl[1] - ctrl[0],
            "worker_group": ctx[0] - ctrl[1], "worker_context": ctx[1] - ctx[0], "backend": entry - ctx[1],
            "training_code_import": imported - entry, "finish": t_end - imported, "total": t_end - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--gpu", action="store_true", help="the worker holds a GPU (scaling.use_gpu)")
    ap.add_argument("--storage", type=Path, default=Path("/tmp/unlearn-ray-startup"))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.runs < 2:
        ap.error(f"--runs {args.runs}: need at least 2 (the first run of a cluster is reported apart)")
    from sweeps.cluster import ensure_ray

    ensure_ray(None)
    args.storage.mkdir(parents=True, exist_ok=True)
    runs = [one_run(i, args.storage.resolve(), args.gpu) for i in range(args.runs)]
    keys = (*PHASES, "total")
    median = {k: statistics.median(r[k] for r in runs[1:]) for k in keys}
    print(f"Ray Train run start-up, one worker{' holding a GPU' if args.gpu else ''}: first run, then the median "
          f"of {len(runs) - 1} (s)")
    for k in keys:
        print(f"  {k.replace('_', ' '):<22} {runs[0][k]:6.2f}  {median[k]:6.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"gpu": args.gpu, "first": runs[0], "median_rest": median, "runs": runs},
                                        indent=2))


if __name__ == "__main__":
    main()
