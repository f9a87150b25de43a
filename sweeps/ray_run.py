"""Every unlearning run goes through Ray Train: ``TorchTrainer`` runs ``unlearn_worker``.

``run_unlearning`` is what ``unlearn-sweep run`` and each sweep trial call. ``scaling.launcher`` says
where the run executes:
- ``ray_train``: on Ray Train workers. Inside a Tune trial the trial's process is the run's driver (the
  Ray Train V2 pattern): ``TuneReportCallback`` forwards rank 0's reports to Tune.
- ``local``: Ray Train's local mode (``num_workers=0``), in the calling process: one CPU worker and no
  start-up (no controller, no worker group: ~14 s less per run on 2 cores). Inside a Tune trial that is the
  trial's own process, which Tune keeps for the next trial; ``LocalReporter`` reports each epoch to Tune
  and writes checkpoints in Ray Train's layout, read back the same way (``latest_complete_checkpoint``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sweeps.envvars import scoped_logger_level
from sweeps.failures import (
    OutOfMemoryError,
    RunFailedError,
    data_limit,
    failure_summary,
    is_allocation_failure,
    lift_memory_limit,
    limit_worker_memory,
    may_be_lost,
    oom_advice,
    restore_data_limit,
    retryable,
)
from sweeps.reporters import LocalReporter, RayReporter, StopAfterEpochs
from sweeps.results import finished_results, load_results
from unlearn.errors import ConfigError
from unlearn.train.config import RunConfig
from unlearn.train.prepare import Prepared, prepare
from unlearn.train.run import RESULTS_FILE, WorkerResult, unlearn_worker, write_results


@dataclass(frozen=True)
class WorkerArgs:
    """What ``run_unlearning`` hands each Ray Train worker (as ``train_loop_config={"args": ...}``).

    ``out_dir``: where rank 0 writes ``results.json``; ``checkpoint_root``: the run's checkpoints in Ray
    Train's layout (None with remote storage: Ray Train's own checkpoints then); ``tune_trial`` /
    ``wait_for_tune``: as ``run_unlearning``'s; ``stop_after``: epochs after which to stop (an
    interruption); ``fit_start``: when this attempt's ``fit`` started (the run's timeline starts there).
    """

    run: RunConfig
    prepared: Prepared
    out_dir: Path
    launcher: str
    checkpoint_root: Path | None = None
    tune_trial: bool = False
    wait_for_tune: bool = True
    stop_after: int | None = None
    fit_start: float = 0.0


def _worker_entry(config: dict[str, WorkerArgs]) -> None:
    import faulthandler

    import ray.train
    import ray.train.torch

    from unlearn.train.loop import Dist
    from unlearn.train.strategy import make_strategy

    args = config["args"]
    cfg = args.run
    local = args.launcher == "local"
    if not local:  # a local run leaves the calling process's fault handling as it is
        faulthandler.enable()  # stacks of a native crash (Ray's own crash handler is off: see sweeps.cluster)
    threads, saved_limit = torch.get_num_threads(), data_limit()
    torch.set_num_threads(max(1, int(cfg.scaling.cpus_per_worker)))
    if cfg.scaling.memory_limit_gb is not None:
        limit_worker_memory(cfg.scaling.memory_limit_gb)
    device = ray.train.torch.get_device() if cfg.scaling.use_gpu else torch.device("cpu")
    if local:
        # one worker, in the calling process; ray.train's context API refuses a Tune trial's process
        dist = Dist(0, 1, device)
    else:
        ctx = ray.train.get_context()
        dist = Dist(ctx.get_world_rank(), ctx.get_world_size(), device)
    strategy = make_strategy(cfg.scaling.resolved_strategy, device, dist.world_size)
    reporter = (LocalReporter(args.checkpoint_root, to_tune=args.tune_trial, wait_for_tune=args.wait_for_tune,
                              stop_after=args.stop_after) if local
                else RayReporter(args.stop_after, args.checkpoint_root))
    log = print if dist.rank == 0 else (lambda s: None)
    ended = False  # the run returned or stopped as asked: its reports must all reach Tune
    try:
        result = unlearn_worker(cfg, args.prepared, strategy=strategy, dist=dist, reporter=reporter,
                                out_dir=args.out_dir, log=log)
        ended = True
    except StopAfterEpochs:
        ended = True
        return
    except (torch.OutOfMemoryError, MemoryError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and not isinstance(e, torch.OutOfMemoryError) and not is_allocation_failure(str(e)):
            raise
        if cfg.scaling.memory_limit_gb is not None:
            lift_memory_limit()  # the run is over: reporting the error must not fail for want of memory
        raise OutOfMemoryError(oom_advice(cfg, f"worker {dist.rank}", f"{type(e).__name__}: "
                                                                      f"{str(e).splitlines()[0] if str(e) else ''}")) from e
    finally:
        if local:
            # the calling process lives on (a Tune trial's process runs the next trial): undo the run's settings
            restore_data_limit(saved_limit)
            torch.set_num_threads(threads)
            reporter.close(raise_errors=ended)
    if dist.rank == 0:
        # when the driver called fit(): the timeline then also shows Ray Train's own start-up
        result.timeline = {"fit_start": args.fit_start, **result.timeline}
        write_results(args.out_dir, cfg, args.prepared, result, {"ray_workers": dist.world_size,
                                                                 "strategy": strategy.name, "device": str(device),
                                                                 "launcher": args.launcher})


def _scaling_config(cfg: RunConfig, launcher: str):
    import ray.train

    if launcher != "local":
        return ray.train.ScalingConfig(num_workers=cfg.scaling.workers, use_gpu=cfg.scaling.use_gpu,
                                       resources_per_worker={"CPU": cfg.scaling.cpus_per_worker})
    # Ray logs at INFO that local mode is on, once per run: once per trial in a sweep's output
    with scoped_logger_level("ray.train.v2.api.config", logging.WARNING):
        return ray.train.ScalingConfig(num_workers=0)


def run_unlearning(cfg: RunConfig, out_dir: str | Path, *, prepared: Prepared | None = None, name: str | None = None,
                   storage_path: str | Path | None = None, address: str | None = None, max_failures: int = 0,
                   tune_trial: bool = False, wait_for_tune: bool = True, stop_after_epochs: int | None = None,
                   log=print, verbose: bool = False) -> WorkerResult | None:
    """prepare (cached) -> unlearn with Ray Train (``scaling.launcher``) -> evaluate; rank 0 writes
    ``out_dir/results.json``.

    Args:
        name, storage_path: the run's identity; the same pair resumes from its latest checkpoint.
        address: the Ray cluster of a ``ray_train`` run (a ``local`` run executes in this process).
        max_failures: lost workers to survive, each by a fresh Ray Train run that resumes from the latest
            checkpoint; the run's own errors (diverged loss, out of memory, bad config) fail at once. A
            ``local`` run has no workers to lose (its process is the caller's).
        tune_trial: the caller is a Ray Tune trial: each epoch is reported to Tune.
        wait_for_tune: each report waits until Tune's driver has processed it (a scheduler may stop the
            trial on it); else a ``local`` run reports from a thread and goes on (``TuneReportThread``).
        stop_after_epochs: stop after this many epochs (an interruption; a second call resumes).
        verbose: Ray's notices when it starts a local cluster (``sweeps.cluster.ensure_ray``).

    Raises:
        ConfigError: ``out_dir`` already holds a finished run (checked before Ray starts; never overwritten);
            ``address`` given to a ``local`` run.
        RunFailedError: the run failed (its own error, or lost more than ``max_failures`` workers).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    from sweeps.cluster import check_placeable, ensure_ray

    out = Path(out_dir).resolve()
    launcher = cfg.scaling.resolved_launcher
    if finished_results(out) is not None:
        # resuming would run no epoch and write a results.json without metrics over the finished one
        raise ConfigError(f"{out} already holds a finished run ({out / RESULTS_FILE}); valid: another output "
                          f"directory (--out), or delete {out} to run it again")
    if launcher == "local" and address:
        raise ConfigError(f"--address {address} with scaling.launcher={cfg.scaling.launcher} (this run executes in "
                          "this process, one CPU worker); valid: scaling.launcher=ray_train to run on the cluster's "
                          "workers, or no --address")
    if launcher == "ray_train":
        check_placeable(cfg.scaling, ensure_ray(address, verbose=verbose))
    prepared = prepared or prepare(cfg, log=log, announce_cached=not tune_trial)
    remote = "://" in str(storage_path or "")  # a URI (s3://, gs://): Path() would fold its '//'
    storage = str(storage_path) if remote else Path(storage_path).resolve() if storage_path else out / "ray"
    if launcher == "local" and remote:
        raise ConfigError(f"storage {storage} with scaling.launcher={cfg.scaling.launcher}: a run in this process "
                          "checkpoints to a local or shared file system path; valid: such a --storage-path, or "
                          "scaling.launcher=ray_train")
    args = WorkerArgs(cfg, prepared, out, launcher, tune_trial=tune_trial, wait_for_tune=wait_for_tune,
                      stop_after=stop_after_epochs,
                      checkpoint_root=None if remote else Path(storage) / (name or "unlearn"))
    callbacks = []
    if tune_trial and launcher == "ray_train":
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    failures = 0
    while True:
        # Ray Train's own FailureConfig would also retry a diverged or out-of-memory run; a fresh run
        # resumes from the latest checkpoint all the same, and only a lost worker is worth it.
        # the run's timeline starts here (Ray Train's own start-up)
        attempt = dataclasses.replace(args, fit_start=time.time())
        trainer = TorchTrainer(
            _worker_entry, train_loop_config={"args": attempt},
            scaling_config=_scaling_config(cfg, launcher),
            run_config=ray.train.RunConfig(name=name or "unlearn", storage_path=str(storage),
                                           failure_config=ray.train.FailureConfig(max_failures=0),
                                           checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
                                           callbacks=callbacks),
        )
        try:
            trainer.fit()
            break
        except ray.train.TrainingFailedError as e:
            summary = failure_summary(cfg, str(e))
            if not (retryable(summary) or may_be_lost(summary)) or failures >= max_failures:
                raise RunFailedError(summary) from e
            failures += 1
            what = "a worker died under its memory cap (lost, or out of memory)" if may_be_lost(summary) \
                else f"a worker failed ({summary})"
            log(f"{what}; restarting from the latest checkpoint (failure {failures} of {max_failures} allowed)")
        except Exception as e:
            if launcher != "local":
                raise
            # local mode raises the training function's own error, in this process
            raise RunFailedError(failure_summary(cfg, f"{type(e).__name__}: {e}", in_process=True)) from e
    if stop_after_epochs is not None or not (out / RESULTS_FILE).is_file():
        return None
    doc = load_results(out)  # rank 0 wrote them, in a worker's process
    return WorkerResult(doc["final"], doc["epochs"], doc.get("best_epoch"), doc.get("reference_max_change"),
                        doc.get("per_item", {}))
