"""A sweep's run, once its directory is set up (``sweeps.sweep``): prepare once, resolve the constraints,
open the MLflow parent run, ``Tuner.fit`` (``sweeps.tuner``), close what it left open, pick the best."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from sweeps.envvars import scoped_env
from sweeps.layout import (
    BEST_FILE,
    CONFIRMATION_FILE,
    CONSTRAINTS_FILE,
    SPACE_FILE,
    TRIAL_FILE,
    TRIALS_DIR,
    SweepSettings,
    confirm_run_dir,
    load_sweep_meta,
    read_json,
    write_json_atomic,
)
from sweeps.record import Bound, ReportedRecord, make_record
from sweeps.report import collect_trials, write_best_config
from sweeps.report.export import best_config_notes
from sweeps.report.select import choose
from sweeps.report.plots import log_sweep_artifacts
from sweeps.report.trials import TrialRow, load_bounds
from sweeps.signals import SweepInterrupted, stop_on_interrupt
from sweeps.space import SearchSpace, confirm_seed, load_sweep_space
from sweeps.tracking import PER_ITEM_ARTIFACT, SweepTracker, flatten, result_metrics
from sweeps.confirm import load_candidates, load_finals, run_stage
from sweeps.trial import ConfirmJob, TrialContext, watched_metrics
from sweeps.tuner import TUNE_ENV, build_confirm_tuner, build_tuner
from unlearn.config import to_dict
from unlearn.errors import ConfigError, UnlearnError
from unlearn.train.prepare import prepare, target_metrics


@dataclass
class SweepResult:
    """What a finished sweep produced."""

    out_dir: Path
    trials: list[TrialRow]
    best: TrialRow | None
    pareto: list[TrialRow] = field(default_factory=list)
    mlflow_uri: str = ""
    parent_run_id: str | None = None
    experiment_id: str | None = None


class NoTrialFinished(UnlearnError):
    """A sweep ended without one finished trial: nothing to call best (the reasons are in the report)."""

    def __init__(self, result: SweepResult) -> None:
        failed = sum(t.status == "FAILED" for t in result.trials)
        super().__init__(f"no trial finished ({len(result.trials)} trial(s), {failed} failed: see their reasons "
                         "above); nothing was logged as best; fix the cause, then launch the sweep again")
        self.result = result


def _tracker(space: SearchSpace, settings: SweepSettings, meta: dict[str, Any]):
    tracker = SweepTracker(settings.tracking_uri, settings.experiment or f"unlearn-sweep/{space.name}", settings.root)
    params = flatten({"space": space.to_dict(), "settings": {k: v for k, v in to_dict(settings).items()
                                                             if k not in ("progress", "verbose")}})
    tags = {"unlearn.sweep_dir": str(settings.root), "unlearn.study_name": meta["study_name"]}
    if settings.parent_run_id:  # a comparison's method: its sweep nests under the comparison's run
        tags["mlflow.parentRunId"] = settings.parent_run_id
    tracker.start_parent(meta["sweep_id"], params, tags, run_name=space.name)
    return tracker


def run_sweep(space: SearchSpace, settings: SweepSettings, meta: dict[str, Any], resources: dict[str, float], *,
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
    relative = [c.metric for c in space.constraints if c.relative]
    target = target_metrics(space.base_config, prepared, relative) if relative else None
    bounds = tuple(c.resolve(target) for c in space.constraints)
    write_json_atomic(root / CONSTRAINTS_FILE, [b.to_dict() for b in bounds])
    return bounds


def _fit(space: SearchSpace, settings: SweepSettings, meta: dict[str, Any], resources: dict[str, float],
         tracker: SweepTracker, bounds: tuple[Bound, ...], *, resume: bool) -> SweepResult:
    tuner, mlflow_callback = build_tuner(space, settings, meta["study_name"], resources, tracker, bounds,
                                         resume=resume)
    try:
        with scoped_env(TUNE_ENV), stop_on_interrupt() as interrupt:
            tuner.fit()
    finally:
        mlflow_callback.wait()  # its writes run on a thread of their own (Tune ends with them, unless fit raised)
    if interrupt.signum is not None:
        _close_lost_trials(settings.root, tracker, INTERRUPTED_REASON)
        tracker.finish_parent("KILLED")  # set back to RUNNING by the resume
        tracker.flush()
        raise SweepInterrupted(settings.root, interrupt.signum)
    _close_lost_trials(settings.root, tracker, LOST_REASON if resume else UNFINISHED_REASON)
    if space.budget.confirm is not None:
        _confirm(space, settings, resources, tracker, bounds)
    return finish_sweep(settings.root, tracker=tracker, space=space)


def _confirm(space: SearchSpace, settings: SweepSettings, resources: dict[str, float], tracker: SweepTracker,
             bounds: tuple[Bound, ...]) -> None:
    """The confirmation stage (``sweeps.confirm``), each round a Tuner of its own."""

    def run_round(jobs, name: str) -> None:
        tuner, callback = build_confirm_tuner(space, settings, jobs, name, resources, tracker, bounds)
        try:
            with scoped_env(TUNE_ENV), stop_on_interrupt() as interrupt:
                tuner.fit()
        finally:
            callback.wait()
        if interrupt.signum is not None:
            tracker.finish_parent("KILLED")  # set back to RUNNING by the resume
            tracker.flush()
            raise SweepInterrupted(settings.root, interrupt.signum)

    doc = run_stage(space, settings, collect_trials(settings.root), bounds, run_round,
                    log=print if settings.progress else (lambda s: None))
    _close_confirmation_runs(space, settings, tracker, bounds)
    if doc is not None:
        tracker.log_parent_dict(doc, CONFIRMATION_FILE)


def _close_confirmation_runs(space: SearchSpace, settings: SweepSettings, tracker: SweepTracker,
                             bounds: tuple[Bound, ...]) -> None:
    """A confirmation run that finished on disk just before a driver died may have no finished MLflow child
    (its Tune trial's end was never called back): finish it now from its results, with its record's values
    and its per-question statistics, so that every run of the stage is on record once."""
    candidates = load_candidates(settings.root) or []
    ctx = TrialContext(space, str(settings.root), settings.ray_storage, bounds)
    finals = load_finals(settings.root, candidates)
    for c in candidates:
        for index, final in finals[c.trial_id].items():
            job = ConfirmJob(c.trial_id, c.params, index, confirm_seed(space, index))
            if tracker.trial_status(job.run_id) == "FINISHED":
                continue
            run = confirm_run_dir(settings.root, c.trial_id, index)
            record = make_record([{"index": index, "seed": job.seed, "dir": str(run), "final": final, "best_epoch": None}],
                                 space.budget.aggregate, bounds, watched_metrics(ctx))
            tracker.tag_trial(job.run_id, job.tags)
            tracker.log_trial_dict(job.run_id, job.per_item(settings.root), PER_ITEM_ARTIFACT)
            tracker.finish_trial(job.run_id, "FINISHED", None,
                                 result_metrics(ReportedRecord.of(record.to_result()).entries))
    tracker.flush()


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
    space = space or load_sweep_space(root)
    trials = collect_trials(root)
    bounds = load_bounds(root)
    choice = choose(root, space, trials, bounds)
    best, pareto = choice.best, choice.pareto
    if best is None:
        (root / BEST_FILE).unlink(missing_ok=True)  # no best: no file that says otherwise
    best_path = write_best_config(root, best, best_config_notes(space, trials, bounds, choice)) if best else None
    if tracker is not None:
        study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
        log_sweep_artifacts(tracker, study, root / SPACE_FILE, best.config if best else None, root / "artifacts")
        if best_path is not None:
            tracker.log_parent_artifact(best_path, "sweep")
        finished = any(t.status in ("FINISHED", "DAMAGED") for t in trials)
        tracker.finish_parent("FINISHED" if finished else "FAILED")
        tracker.flush()
    return SweepResult(root, trials, best, pareto, meta["tracking_uri"],
                       tracker.parent_run_id if tracker is not None else None,
                       tracker.experiment_id() if tracker is not None else None)
