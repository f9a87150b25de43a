"""How long a Tune trial waits in its per-epoch reports, three ways.

    python -m bench.tune_report --json bench/results/tune_report.json

One Tune trial (a function trainable) does ``--epochs`` steps of ``--work-ms`` of busy work and reports
after each; the driver has one callback that takes ``--callback-ms`` per result (standing in for the
sweep's ledger, MLflow hand-off and progress line). Per way, the time the trial's loop spent in its
reports (mean and worst per epoch):

- ``ray.tune.report``: returns once Tune's driver has processed the result and asked for the next one;
- Tune's result buffering (``TUNE_RESULT_BUFFER_LENGTH`` = ``TUNE_RESULT_BUFFER_MIN_TIME_S`` = 5): the
  trial's actor collects results and the driver gets them in batches;
- ``sweeps.reporters.TuneReportThread``: the trial hands each result to a thread that reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")

WAYS = ("report", "tune_buffering", "report_thread")


def trial(config: dict) -> None:
    import ray.tune

    from sweeps.reporters import TuneReportThread

    sender = TuneReportThread() if config["way"] == "report_thread" else None
    waits = []
    for epoch in range(config["epochs"]):
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < config["work_ms"] / 1000:
            pass  # the epoch's work
        metrics = {"epoch": epoch + 1}
        t1 = time.perf_counter()
        if sender is not None:
            sender.put(metrics)
        else:
            ray.tune.report(metrics)
        waits.append(time.perf_counter() - t1)
    if sender is not None:
        sender.close()
    # the last report carries the figures (the trial's final result)
    ray.tune.report({"epoch": config["epochs"] + 1, "wait_mean_ms": 1000 * sum(waits) / len(waits),
                     "wait_max_ms": 1000 * max(waits)})


def measure(way: str, epochs: int, work_ms: float, callback_ms: float, storage: Path) -> dict[str, float]:
    import ray.tune

    from sweeps.envvars import scoped_env

    class SlowDriver(ray.tune.Callback):
        def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
            time.sleep(callback_ms / 1000)

    env = {"TUNE_RESULT_BUFFER_LENGTH": "5", "TUNE_RESULT_BUFFER_MIN_TIME_S": "5"} if way == "tune_buffering" else {}
    with scoped_env(env):
        grid = ray.tune.Tuner(trial, param_space={"way": way, "epochs": epochs, "work_ms": work_ms},
                              run_config=ray.tune.RunConfig(name=way, storage_path=str(storage), verbose=0,
                                                            callbacks=[SlowDriver()])).fit()
    metrics = grid[0].metrics
    return {"wait_mean_ms": metrics["wait_mean_ms"], "wait_max_ms": metrics["wait_max_ms"]}


def main() -> None:
    import tempfile

    import ray

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=60)
    ap.add_argument("--work-ms", type=float, default=50.0)
    ap.add_argument("--callback-ms", type=float, default=10.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    ray.init(address="local", num_cpus=4, include_dashboard=False, configure_logging=False)
    with tempfile.TemporaryDirectory(prefix="bench-tune-report-") as tmp:
        rows = {way: measure(way, args.epochs, args.work_ms, args.callback_ms, Path(tmp)) for way in WAYS}
    ray.shutdown()
    print(f"{args.epochs} epochs of {args.work_ms:g} ms, a driver callback of {args.callback_ms:g} ms per result:")
    for way, row in rows.items():
        print(f"  {way:15s} trial waits {row['wait_mean_ms']:6.2f} ms per report on average, {row['wait_max_ms']:6.1f} ms at worst")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "ways": rows}, indent=1))


if __name__ == "__main__":
    main()
