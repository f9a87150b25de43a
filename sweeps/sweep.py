"""The product's main job: a Ray Tune + Optuna sweep over the reweighting family, every trial in MLflow.

The sweep directory's layout is ``sweeps.layout``; the searcher is ``sweeps.search``.
"""

from __future__ import annotations

import shlex
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweeps.envvars import scoped_env
from sweeps.layout import (
    BEST_FILE,
    CONSTRAINTS_FILE,
    SPACE_FILE,
    SWEEP_BACKUP,
    SWEEP_FILE,
    TUNE_NAME,
    SweepSettings,
    load_sweep_meta,
    storage_child,
    write_json_atomic,
)
from sweeps.ledger import LedgerCallback
from sweeps.record import Bound
from sweeps.report import collect_trials, pick_best, write_best_config
from sweeps.report.plots import log_sweep_artifacts
from sweeps.report.trials import load_bounds
from sweeps.search import make_searcher
from sweeps.plan import DRIVER_CPU, TrialPlans
from sweeps.space import SearchSpace, load_space
from sweeps.trial import TrialContext, run_trial
from unlearn.config import to_dict
from unlearn.errors import ConfigError, UnlearnError
from unlearn.train.prepare import prepare

@dataclass
class SweepResult:
    """What a finished sweep produced."""

    out_dir: Path
    trials: list[dict[str, Any]]
    best: dict[str, Any] | None
    pareto: list[dict[str, Any]] = field(default_factory=list)
    mlflow_uri: str = ""
    parent_run_id: str | None = None
    experiment_id: str | None = None


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM stopped the sweep: its state is saved, ``unlearn-sweep resume DIR``
    continues it; or (``undone``) stopped a launch before its first trial, which removed what it wrote."""

    def __init__(self, out_dir: Path, signum: int = signal.SIGINT, *, undone: bool = False) -> None:
        name = signal.Signals(signum).name
        todo = (" before its first trial; nothing was kept: launch it again (the same --out is accepted)" if undone
                else f"; continue it with: unlearn-sweep resume {shlex.quote(str(out_dir))}")
        super().__init__(f"interrupted ({name}){todo}")
        self.out_dir = out_dir
        self.signum = signum
        self.undone = undone


class NoTrialFinished(UnlearnError):
    """A sweep ended without one finished trial: nothing to call best (the reasons are in the report)."""

    def __init__(self, result: SweepResult) -> None:
        failed = sum(t["status"] == "FAILED" for t in result.trials)
        super().__init__(f"no trial finished ({len(result.trials)} trial(s), {failed} failed: see their reasons "
                         "above); nothing was logged as best; fix the cause, then launch the sweep again")
        self.result = result


class _ParamsOf:
    """Picklable ``params_of`` for the MLflow callback (Tune pickles callbacks into its state)."""

    def __init__(self, plans: TrialPlans) -> None:
        self.plans = plans

    def __call__(self, trial: Any) -> dict[str, Any]:
        return self.plans.get(trial.config).mlflow_params


class _TrialResources:
    """Picklable per-trial resources for ``tune.with_resources``: a space may sample ``scaling.*``."""

    def __init__(self, plans: TrialPlans) -> None:
        self.plans = plans

    def __call__(self, config: dict[str, Any]):
        from ray.tune import PlacementGroupFactory

        return PlacementGroupFactory([self.plans.get(config).resources])


def _reuse_trial_actors(space: SearchSpace) -> bool:
    """A finished trial's driver process runs the next trial: no new process (and imports) per trial,
    ~4 s less between trials on 2 cores (BENCHMARKS.md). Not with early stopping: Tune hands an actor
    on only once its trial's function has returned (2 s wait) and otherwise fails the next trial; a
    trial stopped by ASHA may still be winding down its Ray Train run."""
    return space.early_stopping is None


def _concurrency(space: SearchSpace, resources: dict[str, float]) -> int:
    """Trials that fit side by side: Tune must not start drivers whose workers cannot be placed."""
    s = space.base_config.scaling
    per_trial = s.cpus_per_worker if s.resolved_launcher == "local" else s.workers * s.cpus_per_worker + DRIVER_CPU
    fit = int(resources.get("CPU", 0) // per_trial)
    if s.use_gpu:
        fit = min(fit, int(resources.get("GPU", 0) // s.workers))
    return max(1, min(space.budget.max_concurrent, fit))


def _scheduler(space: SearchSpace):
    if space.early_stopping is None:
        return None
    from ray.tune.schedulers import ASHAScheduler

    es = space.early_stopping
    return ASHAScheduler(time_attr="epoch", metric=es.metric, mode=es.mode, max_t=space.max_epochs,
                         grace_period=es.grace_period, reduction_factor=es.reduction_factor)


def _check_settings(settings: SweepSettings) -> None:
    """Every path, URI and address of a sweep, before it writes anything or starts Ray (reads only)."""
    from sweeps.checks import (
        check_optuna_storage,
        check_storage_path,
        check_writable_dir,
    )
    from sweeps.cluster import check_address
    from sweeps.tracking import check_tracking_uri

    check_writable_dir(settings.root, "--out")
    check_storage_path(settings.storage_path)
    check_optuna_storage(settings.optuna_storage)
    check_tracking_uri(settings.tracking_uri)
    check_address(settings.address)


def _check_new_sweep(settings: SweepSettings) -> None:
    """``--out`` (and ``--storage-path``) must not hold another sweep's state."""
    from sweeps.lock import LOCK_FILE

    root = settings.root
    if (root / SWEEP_FILE).exists():
        raise ConfigError(f"{root} already holds a sweep; continue it with `unlearn-sweep resume {root}` or choose "
                          "another --out")
    if root.exists() and any(p for p in root.iterdir() if p.name not in (".gitkeep", LOCK_FILE)):
        raise ConfigError(f"--out {root} is not empty; valid: a new or empty directory")
    tune_dir = storage_child(settings.ray_storage, TUNE_NAME)
    if settings.storage_path and "://" not in tune_dir and Path(tune_dir).exists():
        raise ConfigError(f"--storage-path {settings.storage_path} already holds a Ray Tune experiment ({tune_dir}, "
                          "another sweep's: a resume would restore the wrong one); valid: a storage path of its "
                          f"own for each sweep, e.g. {storage_child(settings.storage_path, root.name)}")


def launch_sweep(space_path: str | Path, overrides: list[str] | tuple[str, ...], settings: SweepSettings) -> SweepResult:
    """Validate everything, then run a new sweep into ``settings.out_dir``.

    Everything is checked before anything is written; the directory is then locked for the driver's
    life (``sweeps.lock``). A launch that fails, or is interrupted, before its first trial started removes
    what it wrote, so a (corrected) launch into the same ``--out`` is accepted.

    Raises:
        NoTrialFinished: the sweep ran, but none of its trials finished.
        SweepInterrupted: Ctrl-C or SIGTERM, at any point (``undone`` before the first trial).
    """
    root = settings.root
    with _interruptible(root):
        try:
            return _launch(space_path, overrides, settings)
        except SweepInterrupted as e:
            if _any_trial_started(root):
                raise
            raise SweepInterrupted(root, e.signum, undone=True) from None


def _launch(space_path: str | Path, overrides: list[str] | tuple[str, ...], settings: SweepSettings) -> SweepResult:
    from sweeps.checks import check_model_dirs
    from sweeps.cluster import check_placeable, ensure_ray
    from sweeps.lock import check_unlocked, sweep_lock
    from unlearn.train.prepare import check_prepare_inputs

    space = load_space(space_path, overrides)
    root = settings.root
    _check_settings(settings)
    check_unlocked(root, action="launch")  # a running sweep there is named as such, not as "already holds"
    _check_new_sweep(settings)
    cfg = space.base_config
    check_model_dirs(cfg)
    check_prepare_inputs(cfg, cfg.benchmark.load(cfg.data))
    root.mkdir(parents=True, exist_ok=True)
    with sweep_lock(root, action="launch"):
        _check_new_sweep(settings)  # again, as the owner: another launch may have won the race
        sweep_id = uuid.uuid4().hex[:12]
        meta = {"sweep_id": sweep_id, "name": space.name, "study_name": f"{space.name}-{sweep_id}",
                "created": time.time(), "settings": to_dict(settings), "source": space.source,
                "overrides": list(overrides), "tracking_uri": settings.tracking_uri,
                "optuna_storage": settings.study_storage, "ray_storage": settings.ray_storage}
        try:
            resources = ensure_ray(settings.address, verbose=settings.verbose)
            check_placeable(cfg.scaling, resources)
            (root / SPACE_FILE).write_text(space.to_yaml())
            write_json_atomic(root / SWEEP_FILE, meta)
            write_json_atomic(root / SWEEP_BACKUP, meta)  # sweep.json is never rewritten: this copy restores it
            result = _run(space, settings, meta, resources, resume=False)
        except Exception:  # SweepInterrupted included
            if not _any_trial_started(root):
                _undo_launch(settings, meta)
            raise
    return _require_a_finished_trial(result)


def _any_trial_started(root: Path) -> bool:
    from sweeps.layout import TRIALS_DIR

    return (root / TRIALS_DIR).is_dir() and any((root / TRIALS_DIR).iterdir())


def _undo_launch(settings: SweepSettings, meta: dict[str, Any]) -> None:
    """Remove what a launch that failed before its first trial wrote: nothing blocks a corrected relaunch.

    ``--out`` held nothing before (checked), so all but the lock file goes; an external study is deleted,
    an external MLflow parent run stays, FAILED (``_run``), a new launch makes a new one.
    """
    import shutil

    from sweeps.lock import LOCK_FILE

    root = settings.root
    for p in root.iterdir():
        if p.name in (LOCK_FILE, ".gitkeep"):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if settings.optuna_storage:
        import optuna

        try:
            optuna.delete_study(study_name=meta["study_name"], storage=settings.optuna_storage)
        except Exception:  # noqa: BLE001 -- never created, or the database is what failed
            pass
    tune_dir = storage_child(settings.ray_storage, TUNE_NAME)
    if settings.storage_path and "://" not in tune_dir:
        shutil.rmtree(tune_dir, ignore_errors=True)  # did not exist before the launch (checked)


def _require_a_finished_trial(result: SweepResult) -> SweepResult:
    # DAMAGED: the trial finished, a file of it was damaged since (``report`` names it); not this error
    if not any(t["status"] in ("FINISHED", "DAMAGED") for t in result.trials):
        raise NoTrialFinished(result)
    return result


def resume_sweep(out_dir: str | Path, *, address: str | None = None, progress: bool = True,
                 verbose: bool = False) -> SweepResult:
    """Continue an interrupted sweep: finished trials are kept, unfinished ones run again from checkpoints.

    Raises:
        SweepLockedError: another driver owns the directory.
        ConfigError: its settings are damaged, or its study is missing (checked before anything runs).
        NoTrialFinished: the sweep ended, but none of its trials finished.
        SweepInterrupted: Ctrl-C or SIGTERM, at any point.
    """
    root = Path(out_dir).expanduser().resolve()
    with _interruptible(root):
        return _resume(root, address, progress, verbose)


def _resume(root: Path, address: str | None, progress: bool, verbose: bool) -> SweepResult:
    from sweeps.checks import check_storage_path
    from sweeps.cluster import check_address, ensure_ray
    from sweeps.lock import check_unlocked, sweep_lock
    from sweeps.tracking import check_tracking_uri

    check_unlocked(root, action="resume")  # a launch still starting has written no sweep.json yet
    meta = load_sweep_meta(root)
    settings = SweepSettings(**{**meta["settings"], "address": address or meta["settings"].get("address"),
                                "progress": progress, "verbose": verbose})
    space = load_space(root / SPACE_FILE)
    check_storage_path(settings.storage_path)
    check_tracking_uri(settings.tracking_uri)
    check_address(settings.address)
    _check_study(root, meta, settings)
    with sweep_lock(root, action="resume"):  # the checks above only read: a failed one leaves no lock file
        resources = ensure_ray(settings.address, verbose=settings.verbose)
        result = _run(space, settings, meta, resources, resume=True)
    return _require_a_finished_trial(result)


def _check_study(root: Path, meta: dict[str, Any], settings: SweepSettings) -> None:
    """A resume needs the sweep's Optuna study once Tune has started it (trials, a saved experiment).

    Without it the restored searcher refers to study trials that do not exist, and the resume crashes
    with its trials left RUNNING. Refused up front, with what can be done.
    """
    import ray.tune

    url, name = meta["optuna_storage"], meta["study_name"]
    started = _any_trial_started(root) or ray.tune.Tuner.can_restore(storage_child(settings.ray_storage, TUNE_NAME))
    if not started:
        return  # stopped before its first trial: the resume creates the study
    db = Path(url[len("sqlite:///"):]) if url.startswith("sqlite:///") else None
    if db is not None and not db.is_file():
        missing = f"{db} is missing"
    else:
        import optuna

        try:
            if name in optuna.get_all_study_names(url):
                return
        except Exception as e:  # noqa: BLE001 -- a damaged file, an unreachable server: say which
            raise ConfigError(f"cannot resume {root}: its Optuna study {name!r} cannot be read from {url} "
                              f"({type(e).__name__}: {str(e).splitlines()[0][:200]}); repair or restore that "
                              "database, then resume again") from None
        missing = f"{url} holds no study {name!r}"
    raise ConfigError(
        f"cannot resume {root}: its Optuna study is gone ({missing}): the searcher's history and the trials' "
        f"study records live there, and the search cannot go on without them. Restore it from a backup and "
        f"resume again; or keep what ran (`unlearn-sweep report {root}`, `unlearn-sweep export-best {root} --out "
        f"best.yaml`) and search on in a new sweep: `unlearn-sweep launch {root / SPACE_FILE} --out NEW_DIR`")


def _tracker(space: SearchSpace, settings: SweepSettings, meta: dict[str, Any]):
    from sweeps.tracking import SweepTracker, flatten

    tracker = SweepTracker(settings.tracking_uri, f"unlearn-sweep/{space.name}", settings.root)
    params = flatten({"space": space.to_dict(), "settings": {k: v for k, v in to_dict(settings).items()
                                                             if k not in ("progress", "verbose")}})
    tracker.start_parent(meta["sweep_id"], params, {"unlearn.sweep_dir": str(settings.root),
                                                    "unlearn.study_name": meta["study_name"]}, run_name=space.name)
    return tracker


def _run(space: SearchSpace, settings: SweepSettings, meta: dict[str, Any], resources: dict[str, float], *,
         resume: bool) -> SweepResult:
    prepared = prepare(space.base_config, log=print if settings.progress else (lambda s: None))  # once
    bounds = resolve_bounds(space, prepared, settings.root)
    tracker = _tracker(space, settings, meta)
    try:
        return _fit(space, settings, meta, resources, tracker, bounds, resume=resume)
    except SweepInterrupted:
        raise
    except Exception:  # (a second Ctrl-C stops at once: the parent stays RUNNING until the resume)
        tracker.finish_parent("FAILED")  # not left RUNNING; a resume sets it back to RUNNING
        tracker.flush()
        raise


def resolve_bounds(space: SearchSpace, prepared, root: Path) -> tuple[Bound, ...]:
    """The space's constraints as absolute bounds (relative ones against the prepared target model's
    metrics), written to ``DIR/constraints.json`` for the report."""
    from unlearn.train.prepare import target_metrics

    relative = [c.metric for c in space.constraints if c.relative]
    target = target_metrics(space.base_config, prepared, relative) if relative else None
    bounds = tuple(c.resolve(target) for c in space.constraints)
    write_json_atomic(root / CONSTRAINTS_FILE, [b.to_dict() for b in bounds])
    return bounds


def _fit(space: SearchSpace, settings: SweepSettings, meta: dict[str, Any], resources: dict[str, float], tracker,
         bounds: tuple[Bound, ...], *, resume: bool) -> SweepResult:
    import ray.tune

    from sweeps.progress import ProgressCallback
    from sweeps.tracking import MLflowTrialCallback

    ctx = TrialContext(space, str(settings.root), settings.ray_storage, bounds)
    plans = TrialPlans(space)
    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, ctx=ctx), _TrialResources(plans))
    mlflow_callback = MLflowTrialCallback(tracker, max_steps=space.max_epochs, params_of=_ParamsOf(plans))
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    # Tune's own per-trial result.json / progress.csv (its ResultGrid reads them); no TensorBoard files
    # (MLflow is the UI; Tune's auto loggers are off during fit, see TUNE_ENV)
    callbacks = [LedgerCallback(settings.root, space.max_epochs), mlflow_callback,
                 ProgressCallback(space, enabled=settings.progress, bounds=bounds), JsonLoggerCallback(),
                 CSVLoggerCallback()]
    path = storage_child(settings.ray_storage, TUNE_NAME)
    if resume and ray.tune.Tuner.can_restore(path):
        tuner = ray.tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=False)
    else:
        searcher = make_searcher(space, settings.study_storage, meta["study_name"], bounds, resume=resume)
        tuner = ray.tune.Tuner(
            trainable,
            tune_config=ray.tune.TuneConfig(search_alg=searcher,
                                            scheduler=_scheduler(space), num_samples=space.budget.num_samples,
                                            max_concurrent_trials=_concurrency(space, resources),
                                            time_budget_s=space.budget.time_budget_s,
                                            reuse_actors=_reuse_trial_actors(space)),
            run_config=ray.tune.RunConfig(name=TUNE_NAME, storage_path=settings.ray_storage, callbacks=callbacks,
                                          verbose=0),
        )
    try:
        with scoped_env(TUNE_ENV), _stop_on_interrupt() as interrupt:
            tuner.fit()
    finally:
        mlflow_callback.wait()  # its writes run on a thread of their own (Tune ends with them, unless fit raised)
    if interrupt.signum is not None:
        _close_lost_trials(settings.root, tracker, INTERRUPTED_REASON)
        tracker.finish_parent("KILLED")  # set back to RUNNING by the resume
        tracker.flush()
        raise SweepInterrupted(settings.root, interrupt.signum)
    _close_lost_trials(settings.root, tracker, LOST_REASON if resume else UNFINISHED_REASON)
    return finish_sweep(settings.root, tracker=tracker, space=space)


# Tune reads these settings from the environment while ``fit`` runs; set only then (``scoped_env``).
TUNE_ENV = {
    # Epochs without evaluation report training statistics only; Tune's strict check would reject them
    # (the objective metrics arrive with the evaluated epochs; ASHA spaces require epoch_eval).
    "TUNE_DISABLE_STRICT_METRIC_CHECKING": "1",
    # Tune's default loggers minus TensorBoard's (the JSON and CSV ones are in the RunConfig's callbacks):
    # no event files per result, and no console hint to run TensorBoard on a /tmp/ray path
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    # Tune's console reporter prints its configuration box and "View detailed results here: <ray storage>"
    # whatever the verbosity; the sweep prints its own progress line and summary (the legacy reporter,
    # at verbose=0, prints nothing)
    "RAY_AIR_NEW_OUTPUT": "0",
}


class _Interrupt:
    """Which stop signal (SIGINT, SIGTERM) stopped ``Tuner.fit``; None while none did."""

    signum: int | None = None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what a cluster scheduler sends


@contextmanager
def _interruptible(root: Path) -> Iterator[None]:
    """Ctrl-C or SIGTERM outside ``Tuner.fit`` (checks, Ray's start, prepare, the summary) raises
    SweepInterrupted at once: the CLI says so in one line (exit 130 / 143), rather than a traceback, or
    Ray's ``sys.exit`` and its native stack dump. ``_stop_on_interrupt`` takes over while fit runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame) -> None:
        raise SweepInterrupted(root, signum)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def _stop_on_interrupt() -> Iterator[_Interrupt]:
    """Ctrl-C or SIGTERM during ``Tuner.fit``: Tune stops gracefully (stops the trials, saves the experiment
    state for a resume), as its own SIGINT handler would, and the returned object says which signal did
    (Tune's handler keeps that to itself, and ``fit`` returns as if the sweep had ended). A second signal
    stops at once. SIGTERM would otherwise hit Ray's driver handler (``sys.exit`` mid-fit: an abort, trials
    left RUNNING)."""
    interrupt = _Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt  # signals reach the main thread only; Tune then installs no handler either
        return

    def on_signal(signum, frame) -> None:
        graceful = signal.getsignal(signal.SIGUSR1)  # Tune's graceful stop, installed once fit runs
        if interrupt.signum is not None or not callable(graceful):
            raise KeyboardInterrupt
        interrupt.signum = signum
        graceful(signal.SIGUSR1, frame)

    previous = {s: signal.signal(s, on_signal) for s in STOP_SIGNALS}
    try:
        # Tune leaves SIGINT to on_signal (it still takes SIGUSR1)
        with scoped_env({"TUNE_DISABLE_SIGINT_HANDLER": "1"}):
            yield interrupt
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


LOST_REASON = ("the sweep driver died before Ray Tune recorded this trial; its sampled point was run again "
               "by the resumed sweep")
UNFINISHED_REASON = "not finished when the sweep ended (budget.time_budget_s)"
INTERRUPTED_REASON = ("the sweep was interrupted (Ctrl-C or SIGTERM) while this trial ran; `unlearn-sweep resume` "
                      "runs it again")


def _close_lost_trials(root: Path, tracker, reason: str) -> None:
    """After ``fit`` no trial runs: one still RUNNING in the ledger was stopped by the time budget, or
    (in a resumed sweep) started just before a driver crash, after Tune's last experiment checkpoint, so
    the resumed Tune never knew it. Close it as KILLED (ledger and MLflow) with ``reason``, rather than
    leave it looking alive."""
    from sweeps.layout import TRIAL_FILE, TRIALS_DIR, read_json

    for path in sorted((root / TRIALS_DIR).glob(f"*/{TRIAL_FILE}")):
        try:
            doc = read_json(path, "trial record")
        except ConfigError:
            continue  # damaged records are reported by `report`, by name
        if doc.get("status") != "RUNNING":
            continue
        doc.update(status="KILLED", reason=reason, ended=time.time())
        write_json_atomic(path, doc)
        tracker.finish_trial(path.parent.name, "KILLED", reason)


def finish_sweep(root: Path, *, tracker=None, space: SearchSpace | None = None) -> SweepResult:
    """Collect trials, pick the best (or the Pareto set), log the parent's artifacts."""
    meta = load_sweep_meta(root)
    space = space or load_space(root / SPACE_FILE)
    trials = collect_trials(root)
    best, pareto = pick_best(space, trials, load_bounds(root))
    if best is None:
        (root / BEST_FILE).unlink(missing_ok=True)  # no best: no file that says otherwise
    best_path = write_best_config(root, best) if best else None
    if tracker is not None:
        import optuna

        study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
        log_sweep_artifacts(tracker, study, root / SPACE_FILE, best["config"] if best else None, root / "artifacts")
        if best_path is not None:
            tracker.log_parent_artifact(best_path, "sweep")
        finished = any(t["status"] in ("FINISHED", "DAMAGED") for t in trials)
        tracker.finish_parent("FINISHED" if finished else "FAILED")
        tracker.flush()
    return SweepResult(root, trials, best, pareto, meta["tracking_uri"],
                       tracker.parent_run_id if tracker is not None else None,
                       tracker.experiment_id() if tracker is not None else None)
