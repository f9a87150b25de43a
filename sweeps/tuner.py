"""The Ray Tune Tuner of a sweep, built in one place (``build_tuner``): trainable, resources, searcher,
scheduler, callbacks, concurrency; and the environment Tune reads while it runs (``TUNE_ENV``)."""

from __future__ import annotations

from typing import Any

import ray.tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

from sweeps.layout import TUNE_NAME, SweepSettings, storage_child
from sweeps.ledger import LedgerCallback
from sweeps.plan import DRIVER_CPU, TrialPlans
from sweeps.progress import ProgressCallback
from sweeps.record import Bound
from sweeps.search import make_searcher
from sweeps.space import SearchSpace
from sweeps.tracking import PER_ITEM_ARTIFACT, MLflowTrialCallback, SweepTracker
from sweeps.trial import ConfirmJob, TrialContext, run_confirmation, run_trial


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
        return ray.tune.PlacementGroupFactory([self.plans.get(config).resources])


def _reuse_trial_actors(space: SearchSpace) -> bool:
    """A finished trial's driver process runs the next trial: no new process (and imports) per trial,
    ~4 s less between trials on 2 cores (BENCHMARKS.md). Not with early stopping: Tune hands an actor
    on only once its trial's function has returned (2 s wait) and otherwise fails the next trial; a
    trial stopped by ASHA may still be winding down its Ray Train run."""
    return space.early_stopping is None


def trial_cpus(space: SearchSpace) -> float:
    """The CPUs one trial of the space holds while it runs (its driver and its workers)."""
    s = space.base_config.scaling
    return s.cpus_per_worker if s.resolved_launcher == "local" else s.workers * s.cpus_per_worker + DRIVER_CPU


def _concurrency(space: SearchSpace, resources: dict[str, float]) -> int:
    """Trials that fit side by side: Tune must not start drivers whose workers cannot be placed."""
    s = space.base_config.scaling
    fit = int(resources.get("CPU", 0) // trial_cpus(space))
    if s.use_gpu:
        fit = min(fit, int(resources.get("GPU", 0) // s.workers))
    return max(1, min(space.budget.max_concurrent, fit))


def _scheduler(space: SearchSpace):
    if space.early_stopping is None:
        return None

    es = space.early_stopping
    return ASHAScheduler(time_attr="epoch", metric=es.metric, mode=es.mode, max_t=space.max_epochs,
                         grace_period=es.grace_period, reduction_factor=es.reduction_factor)


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




class _JobResources:
    """Picklable per-trial resources of a confirmation run: its point's plan's."""

    def __init__(self, plans: TrialPlans) -> None:
        self.plans = plans

    def __call__(self, config: dict[str, Any]):
        return ray.tune.PlacementGroupFactory([self.plans.get(config["job"]["params"]).resources])


class _JobParams:
    """Picklable ``params_of`` of a confirmation run: its point's MLflow params and its seed."""

    def __init__(self, plans: TrialPlans) -> None:
        self.plans = plans

    def __call__(self, trial: Any) -> dict[str, Any]:
        job = ConfirmJob.from_dict(trial.config["job"])
        return {**self.plans.get(job.params).mlflow_params, "seed": job.seed, "confirm.trial": job.trial_id,
                "confirm.index": job.index}


def _job_run_id(trial: Any) -> str:
    return ConfirmJob.from_dict(trial.config["job"]).run_id


class ConfirmationCallback(MLflowTrialCallback):
    """The MLflow callback of a confirmation round: each run a child of the sweep's parent, tagged
    ``unlearn.stage: confirmation`` with the search trial whose point it runs, its per-question statistics
    its artifact ``per_item.json`` (one replicate)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._jobs: dict[str, ConfirmJob] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        super().on_trial_start(iteration, trials, trial, **info)
        job = ConfirmJob.from_dict(trial.config["job"])
        self._submit(self.tracker.tag_trial, job.run_id, job.tags)
        self._jobs[job.run_id] = job

    def _log_per_item(self, tid: str) -> None:
        """The run's per-question statistics (its ``results.json``'s ``per_item``) as the child's artifact."""
        if (job := self._jobs.get(tid)) is not None:
            self.tracker.log_trial_dict(tid, job.per_item(self.sweep_dir), PER_ITEM_ARTIFACT)


def build_confirm_tuner(space: SearchSpace, settings: SweepSettings, jobs: list[ConfirmJob], name: str,
                        resources: dict[str, float], tracker: SweepTracker,
                        bounds: tuple[Bound, ...]) -> tuple[ray.tune.Tuner, MLflowTrialCallback]:
    """One round of the confirmation stage: a Tuner whose trials are ``jobs`` (a grid over them)."""
    ctx = TrialContext(space, str(settings.root), settings.ray_storage, bounds)
    plans = TrialPlans(space)
    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_confirmation, ctx=ctx), _JobResources(plans))
    callback = ConfirmationCallback(tracker, params_of=_JobParams(plans), trial_id_of=_job_run_id)
    tuner = ray.tune.Tuner(
        trainable, param_space={"job": ray.tune.grid_search([j.to_dict() for j in jobs])},
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=_concurrency(space, resources),
                                        reuse_actors=True),
        # Tune's own result.json / progress.csv, which its ResultGrid reads at the end of fit (see build_tuner)
        run_config=ray.tune.RunConfig(name=name, storage_path=settings.ray_storage,
                                      callbacks=[callback, JsonLoggerCallback(), CSVLoggerCallback()], verbose=0))
    return tuner, callback


def build_tuner(space: SearchSpace, settings: SweepSettings, study_name: str, resources: dict[str, float],
                tracker: SweepTracker, bounds: tuple[Bound, ...], *,
                resume: bool) -> tuple[ray.tune.Tuner, MLflowTrialCallback]:
    """The sweep's Tuner (restored from its saved state on a resume, where Tune saved one) and its MLflow
    callback, whose writes the caller waits for once ``fit`` returns."""
    ctx = TrialContext(space, str(settings.root), settings.ray_storage, bounds)
    plans = TrialPlans(space)
    trainable = ray.tune.with_resources(ray.tune.with_parameters(run_trial, ctx=ctx), _TrialResources(plans))
    mlflow_callback = MLflowTrialCallback(tracker, max_steps=space.max_epochs, params_of=_ParamsOf(plans),
                                          sweep_dir=settings.root)
    # Tune's own per-trial result.json / progress.csv (its ResultGrid reads them); no TensorBoard files
    # (MLflow is the UI; Tune's auto loggers are off during fit, see TUNE_ENV)
    callbacks = [LedgerCallback(settings.root, space.max_epochs), mlflow_callback,
                 ProgressCallback(space, enabled=settings.progress, bounds=bounds), JsonLoggerCallback(),
                 CSVLoggerCallback()]
    path = storage_child(settings.ray_storage, TUNE_NAME)
    if resume and ray.tune.Tuner.can_restore(path):
        tuner = ray.tune.Tuner.restore(path, trainable=trainable, resume_unfinished=True, resume_errored=False,
                                       restart_errored=False)
        return tuner, mlflow_callback
    searcher = make_searcher(space, settings.study_storage, study_name, bounds, resume=resume)
    tuner = ray.tune.Tuner(
        trainable,
        tune_config=ray.tune.TuneConfig(search_alg=searcher, scheduler=_scheduler(space),
                                        num_samples=space.budget.num_samples,
                                        max_concurrent_trials=_concurrency(space, resources),
                                        time_budget_s=space.budget.time_budget_s,
                                        reuse_actors=_reuse_trial_actors(space)),
        run_config=ray.tune.RunConfig(name=TUNE_NAME, storage_path=settings.ray_storage, callbacks=callbacks,
                                      verbose=0),
    )
    return tuner, mlflow_callback
