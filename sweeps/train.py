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
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from sweeps.results import finished_results, load_results
from unlearn.errors import ConfigError, UnlearnError
from unlearn.train.config import RunConfig
from unlearn.train.prepare import Prepared, prepare
from unlearn.train.run import RESULTS_FILE, WorkerResult, unlearn_worker, write_results


class RayReporter:
    """Reports each epoch to Ray Train from every rank, with a sharded checkpoint when one is due."""

    def __init__(self, stop_after: int | None = None, checkpoint_root: Path | None = None) -> None:
        self.stop_after = stop_after
        self.checkpoint_root = checkpoint_root

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state) -> None:
        import ray.train

        if save_state is None:
            ray.train.report(dict(metrics))
        else:
            with tempfile.TemporaryDirectory(prefix="unlearn-ckpt-") as tmp:
                save_state(Path(tmp))
                ray.train.report(dict(metrics), checkpoint=ray.train.Checkpoint.from_directory(tmp),
                                 checkpoint_dir_name=f"epoch_{epoch + 1:04d}")
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise StopAfterEpochs(epoch + 1)

    def resume_dir(self) -> Path | None:
        import ray.train

        ckpt = ray.train.get_checkpoint()
        if ckpt is not None:
            # Checkpoints live in the run's storage path (local or shared): read them in place.
            return Path(ckpt.path)
        return latest_complete_checkpoint(self.checkpoint_root)


class TuneReportThread:
    """Reports to Tune from a thread of its own, in order, so that the run never waits for them.

    ``ray.tune.report`` returns only once Tune's driver has taken the result and asked for the next one:
    a round trip through the driver's callbacks (ledger, MLflow, progress), ~15 ms per epoch with two
    trials busy on 2 cores (BENCHMARKS.md). Only for sweeps without a scheduler: ASHA decides on each
    result, and a trial it stops must stop there. A report that fails, or Tune stopping the trial
    (``SystemExit`` raised in the reporting thread, e.g. at the time budget), is raised in the run at its
    next report or at ``close``.
    """

    def __init__(self, report=None) -> None:
        from concurrent.futures import ThreadPoolExecutor

        if report is None:
            import ray.tune

            report = ray.tune.report
        self._report = report
        self._error: BaseException | None = None
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tune-reports")  # one: in order

    def _send(self, metrics: dict[str, float]) -> None:
        if self._error is not None:
            return  # the trial is over for Tune: drop the rest
        try:
            self._report(metrics)
        except BaseException as e:  # noqa: BLE001 -- SystemExit: Tune stopped the trial
            self._error = e

    def _raise(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def put(self, metrics: dict[str, float]) -> None:
        self._raise()
        self._sender.submit(self._send, metrics)

    def close(self, *, raise_errors: bool = True) -> None:
        """Wait until every report is with Tune (the trial's last result must be, before its function
        returns); then raise what reporting raised, unless the run is failing anyway."""
        self._sender.shutdown(wait=True)
        if raise_errors:
            self._raise()


class LocalReporter:
    """A run in Ray Train's local mode: its checkpoints go to the run's storage in Ray Train's layout
    (``NAME/epoch_NNNN``, the newest ``keep``), its reports to Tune when the caller is a Tune trial
    (from ``TuneReportThread`` unless ``wait_for_tune``)."""

    def __init__(self, checkpoint_root: Path, *, to_tune: bool, wait_for_tune: bool = True,
                 stop_after: int | None = None, keep: int = 2) -> None:
        self.checkpoint_root = checkpoint_root
        self.to_tune = to_tune
        self.stop_after = stop_after
        self.keep = keep
        self._reports = TuneReportThread() if to_tune and not wait_for_tune else None

    def epoch_end(self, metrics: dict[str, float], epoch: int, save_state) -> None:
        if save_state is not None:
            final = self.checkpoint_root / f"epoch_{epoch + 1:04d}"
            partial = self.checkpoint_root / f".partial_{final.name}"  # complete once renamed
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            save_state(partial)
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
            for old in sorted(self.checkpoint_root.glob("epoch_*"))[:-self.keep]:
                shutil.rmtree(old, ignore_errors=True)
        if self._reports is not None:
            self._reports.put(dict(metrics))
        elif self.to_tune:
            import ray.tune

            ray.tune.report(dict(metrics))
        if self.stop_after is not None and epoch + 1 >= self.stop_after:
            raise StopAfterEpochs(epoch + 1)

    def resume_dir(self) -> Path | None:
        return latest_complete_checkpoint(self.checkpoint_root)

    def close(self, *, raise_errors: bool = True) -> None:
        if self._reports is not None:
            self._reports.close(raise_errors=raise_errors)


def latest_complete_checkpoint(root: Path | None) -> Path | None:
    """The newest fully written checkpoint under the run's storage, even one whose report Ray lost.

    A worker killed right after ``ray.train.report`` can take the report with it: Ray Train then
    restarts from an older checkpoint, or from none. The files are on storage all the same; a
    checkpoint counts once both its DCP metadata and ``meta.json`` are there.
    """
    if root is None or not root.is_dir():
        return None
    done = [d for d in root.glob("epoch_*") if (d / "meta.json").is_file() and (d / "state" / ".metadata").is_file()]
    return max(done, key=lambda d: d.name) if done else None


class OutOfMemoryError(UnlearnError, RuntimeError):
    """A worker ran out of (GPU or host) memory; the message says what to change."""


def _oom_advice(cfg: RunConfig, where: str, error: str) -> str:
    micro = cfg.optim.micro_batch_size or -(-cfg.optim.batch_size // cfg.scaling.workers)
    return (f"out of memory on {where} ({error[:200]}) with micro-batches of {micro} sequences x up to "
            f"{cfg.data.max_length} tokens per worker; lower optim.micro_batch_size (now {cfg.optim.micro_batch_size}) "
            f"or optim.batch_size (now {cfg.optim.batch_size}) or data.max_length, use more workers with "
            "scaling.strategy=fsdp, or a smaller model.dtype (bfloat16)"
            + (f", or raise scaling.memory_limit_gb (now {cfg.scaling.memory_limit_gb})"
               if cfg.scaling.memory_limit_gb is not None else ""))


# What a failed allocation says: torch (CPU, CUDA), Python, the OS (mmap), numpy, Ray's serialisation.
# One rule for the worker (which turns such an error into OutOfMemoryError) and the driver (which reads a
# failed run's text).
_OOM_PATTERN = re.compile(r"(?:OutOfMemoryError|MemoryError|out of memory|(?:can't|cannot|unable to|failed to) "
                          r"allocate)[^\n]*", re.IGNORECASE)


def is_allocation_failure(message: str) -> bool:
    """Whether an error message says that memory ran out."""
    return _OOM_PATTERN.search(message) is not None


def limit_worker_memory(gib: float) -> int:
    """Cap this process's further allocations at ``gib`` GiB beyond its current data segment (RLIMIT_DATA).

    Returns the cap in bytes. An allocation beyond it fails (torch: "can't allocate memory"), which the
    worker reports as ``OutOfMemoryError``.
    """
    import resource

    status = Path("/proc/self/status")
    if not status.is_file():
        raise UnlearnError("scaling.memory_limit_gb needs Linux (/proc/self/status, RLIMIT_DATA); valid on this "
                           "system: scaling.memory_limit_gb=null")
    used_kib = int(re.search(r"^VmData:\s+(\d+) kB", status.read_text(), re.M).group(1))
    cap = used_kib * 1024 + int(gib * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    return cap


def _data_limit() -> tuple[int, int]:
    import resource

    return resource.getrlimit(resource.RLIMIT_DATA)


def _restore_data_limit(limits: tuple[int, int]) -> None:
    import resource

    if resource.getrlimit(resource.RLIMIT_DATA) != limits:
        resource.setrlimit(resource.RLIMIT_DATA, limits)


def _lift_memory_limit() -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


# The run's own errors: deterministic, so a run that raised one is never retried.
_OWN_ERRORS = r"(?:DivergedError|ConfigError|UnlearnError|OutOfMemoryError)"


def retryable(summary: str) -> bool:
    """Whether a failed run is worth restarting: a lost worker is, the run's own errors are not."""
    return re.match(_OWN_ERRORS, summary) is None


class RunFailedError(UnlearnError, RuntimeError):
    """A Ray Train run failed; the message is the workers' own error (e.g. a diverged loss). A user error
    for the CLI (one line, exit 2): what the message names is for the user to change."""


def failure_summary(cfg: RunConfig, text: str, *, in_process: bool = False) -> str:
    """The most telling line of a failed run's error text: this package's errors first, an allocation
    failure anywhere as ``OutOfMemoryError`` with advice, else the last line (Ray's error text), or the
    first (``in_process``: ``"Type: message"`` of an error the run raised in this process)."""
    ours = re.findall(f"({_OWN_ERRORS}[^\n]*)", text)
    lines = [line for line in text.splitlines() if line.strip()]
    summary = ours[-1] if ours else (lines[0 if in_process else -1] if lines else "the run failed without a message")
    oom = _OOM_PATTERN.search(text)
    if oom and "OutOfMemoryError" not in summary:
        # ran out of memory outside the training code (Ray's serialisation, a library): same advice
        return f"OutOfMemoryError: {_oom_advice(cfg, 'a worker', oom.group(0))}"
    if not in_process and retryable(summary) and cfg.scaling.memory_limit_gb is not None:
        # a worker that dies without a Python error under its memory cap ran out of it in native code (an
        # allocation failure aborts there); it would again
        return f"OutOfMemoryError: {_oom_advice(cfg, 'a worker', f'it died under its memory cap: {summary}')}"
    return summary


class StopAfterEpochs(Exception):
    """Raised by a run asked to stop early (``stop_after_epochs``): simulates an interruption."""


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
    threads, data_limit = torch.get_num_threads(), _data_limit()
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
            _lift_memory_limit()  # the run is over: reporting the error must not fail for want of memory
        raise OutOfMemoryError(_oom_advice(cfg, f"worker {dist.rank}", f"{type(e).__name__}: "
                                                                      f"{str(e).splitlines()[0] if str(e) else ''}")) from e
    finally:
        if local:
            # the calling process lives on (a Tune trial's process runs the next trial): undo the run's settings
            _restore_data_limit(data_limit)
            torch.set_num_threads(threads)
            reporter.close(raise_errors=ended)
    if dist.rank == 0:
        # when the driver called fit(): the timeline then also shows Ray Train's own start-up
        result.timeline = {"fit_start": args.fit_start, **result.timeline}
        write_results(args.out_dir, cfg, args.prepared, result, {"ray_workers": dist.world_size,
                                                                 "strategy": strategy.name, "device": str(device),
                                                                 "launcher": args.launcher})


def _scaling_config(cfg: RunConfig, launcher: str):
    import logging

    import ray.train

    if launcher != "local":
        return ray.train.ScalingConfig(num_workers=cfg.scaling.workers, use_gpu=cfg.scaling.use_gpu,
                                       resources_per_worker={"CPU": cfg.scaling.cpus_per_worker})
    # Ray logs at INFO that local mode is on, once per run: once per trial in a sweep's output
    logger = logging.getLogger("ray.train.v2.api.config")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        return ray.train.ScalingConfig(num_workers=0)
    finally:
        logger.setLevel(level)


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
            if not retryable(summary) or failures >= max_failures:
                raise RunFailedError(summary) from e
            failures += 1
            log(f"a worker failed ({summary}); restarting from the latest checkpoint "
                f"(failure {failures} of {max_failures} allowed)")
        except Exception as e:
            if launcher != "local":
                raise
            # local mode raises the training function's own error, in this process
            raise RunFailedError(failure_summary(cfg, f"{type(e).__name__}: {e}", in_process=True)) from e
    if stop_after_epochs is not None or not (out / RESULTS_FILE).is_file():
        return None
    doc = load_results(out)  # rank 0 wrote them, in a worker's process
    return WorkerResult(doc["final"], doc["epochs"], doc.get("best_epoch"), doc.get("reference_max_change"))
