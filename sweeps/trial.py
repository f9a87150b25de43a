"""The trial function: what one Ray Tune trial runs, a sampled point's replicates and its record.

The trial resolves its plan once (``sweeps.plan``: each replicate's seed and run config); each replicate is
a Ray Train run (``sweeps.ray_run.run_unlearning``), one after the other in the trial's process; the trial
then writes its record (``sweeps.record``) and reports it to Tune: that is the value Optuna is told, MLflow
keeps, and ``report`` and ``export-best`` read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.layout import (
    CONFIG_FILE,
    PLAN_FILE,
    RECORD_FILE,
    TRIALS_DIR,
    confirm_run_dir,
    read_json,
    replicate_dir,
    storage_child,
    trial_dir,
    write_json_atomic,
)
from sweeps.plan import ReplicatePlan, resolve_trial
from sweeps.racing import can_still_beat
from sweeps.record import Bound, TrialRecord, make_record, replicate_result
from sweeps.ray_run import run_unlearning
from sweeps.results import finished_results, load_record, load_results
from sweeps.space import SearchSpace
from unlearn.config import to_dict
from unlearn.errors import ConfigError, UnlearnError
from unlearn.train.prepare import Prepared, prepare


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled parameters (travels via tune.with_parameters).

    ``bounds``: the space's constraints resolved after prepare (relative ones against the target model).
    """

    space: SearchSpace
    root: str
    ray_storage: str
    bounds: tuple[Bound, ...] = ()


def watched_metrics(ctx: TrialContext) -> list[str]:
    """The metrics a record gives a 95 % interval: the objectives, the constrained metrics and the ones the
    benchmark's report shows (forget quality keeps its interval beside a distance objective)."""
    shown = ctx.space.base_config.metrics.shown
    return list(dict.fromkeys([*ctx.space.metric_names, *(b.metric for b in ctx.bounds), *shown]))


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune trainable (a plain function): the point's replicates, then its record, reported last."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    out = trial_dir(Path(ctx.root), trial_id)
    if (record := load_record(out)) is not None:
        # The driver died after this trial finished but before Tune recorded it: replay, never re-run.
        ray.tune.report({**record.to_result(), "replayed": 1})
        return
    plan = resolve_trial(ctx.space, config)  # the trial's resolved config, built once
    write_json_atomic(out / PLAN_FILE, plan.to_dict())
    # the same for every replicate (the seed is not part of it); the driver prepared the base: announced there
    prepared = prepare(plan.config, announce_cached=False)
    replicates = []
    for replicate in plan.replicates:
        final, best_epoch, run = _run_replicate(ctx, trial_id, replicate, len(plan.replicates), prepared)
        replicates.append({"index": replicate.index, "seed": replicate.seed, "dir": str(run), "final": final,
                           "best_epoch": best_epoch})
        if len(plan.replicates) > 1:
            ray.tune.report(replicate_result(replicate.index, replicate.seed, final))
        if ctx.space.budget.adaptive and not _can_still_beat(ctx, trial_id, replicates):
            break  # it cannot beat the incumbent: its remaining seeds go to other points
    record = make_record(replicates, ctx.space.budget.aggregate, ctx.bounds, watched_metrics(ctx))
    write_json_atomic(out / RECORD_FILE, record.to_dict())
    ray.tune.report(record.to_result())


def signed_objective(space: SearchSpace, metrics: dict[str, Any]) -> float | None:
    """The space's (single) objective in ``metrics``, higher is better; None when missing or NaN."""
    values = space.signed_values(metrics, first_only=True)
    return None if values is None else values[0]


def incumbent(ctx: TrialContext, but: str) -> float | None:
    """The best feasible value of record (higher is better) of the sweep's finished trials other than ``but``."""
    best = None
    for path in sorted((Path(ctx.root) / TRIALS_DIR).glob(f"*/{RECORD_FILE}")):
        if path.parent.name == but:
            continue
        try:
            record = TrialRecord.from_dict(read_json(path, "a trial's record"))
        except (ConfigError, KeyError, TypeError, ValueError):
            continue  # a damaged record is reported by ``report``; it is no incumbent
        value = signed_objective(ctx.space, record.metrics)
        if record.feasible and value is not None and (best is None or value > best):
            best = value
    return best


def _can_still_beat(ctx: TrialContext, trial_id: str, replicates: list[dict[str, Any]]) -> bool:
    """``budget.adaptive``: whether the point's replicates so far can still beat the incumbent."""
    values = [signed_objective(ctx.space, r["final"]) for r in replicates]
    if any(v is None for v in values):
        return False  # a diverged seed: no mean to improve
    best = incumbent(ctx, trial_id)
    return best is None or can_still_beat(values, best)


def _run_replicate(ctx: TrialContext, trial_id: str, replicate: ReplicatePlan, replicates: int,
                   prepared: Prepared) -> tuple[dict[str, Any], int | None, Path]:
    """One replicate's run (or its results, when a resumed trial had finished it): final metrics, kept epoch."""
    run = replicate_dir(trial_dir(Path(ctx.root), trial_id), replicate.index, replicates)
    name = f"trial-{trial_id}" if replicates == 1 else f"trial-{trial_id}-r{replicate.index}"
    # One replicate reports its epochs to Tune (ASHA decides on them, MLflow keeps their history); with
    # several, each replicate's end is reported instead. ASHA's stop must not let a run train on.
    final, best_epoch = _run_once(ctx, replicate, run, name, prepared, tune_trial=replicates == 1)
    return final, best_epoch, run


def _run_once(ctx: TrialContext, replicate: ReplicatePlan, run: Path, name: str, prepared: Prepared, *,
              tune_trial: bool) -> tuple[dict[str, Any], int | None]:
    """One run into ``run`` (its results, when an earlier attempt finished it): final metrics, kept epoch.
    A run started before under ``name`` resumes from its latest checkpoint."""
    if (done := finished_results(run)) is not None:
        return done["final"], done.get("best_epoch")
    cfg = replicate.config
    write_json_atomic(run / CONFIG_FILE, to_dict(cfg))
    result = run_unlearning(cfg, run, prepared=prepared, name=name,
                            storage_path=storage_child(ctx.ray_storage, "train"), tune_trial=tune_trial,
                            wait_for_tune=ctx.space.early_stopping is not None and tune_trial, max_failures=1)
    if result is None:  # pragma: no cover -- run_unlearning returns None only when asked to stop early
        raise UnlearnError(f"{name} wrote no results ({run})")
    return result.metrics, result.best_epoch


def run_confirmation(config: dict[str, Any], ctx: TrialContext) -> None:
    """The confirmation stage's Tune trainable: one run of a confirmed point (``job.params``, the search
    trial ``job.trial_id``'s) on confirmation seed ``job.index`` (``job.seed``), into
    ``confirm/<trial id>/<index>/``; it reports that run's record (one replicate)."""
    import ray.tune

    job = ConfirmJob.from_dict(config["job"])
    plan = resolve_trial(ctx.space, job.params, seeds=(job.seed,))
    run = confirm_run_dir(Path(ctx.root), job.trial_id, job.index)
    prepared = prepare(plan.config, announce_cached=False)
    final, best_epoch = _run_once(ctx, plan.replicates[0], run, f"confirm-{job.trial_id}-{job.index}", prepared,
                                  tune_trial=False)
    replicate = {"index": job.index, "seed": job.seed, "dir": str(run), "final": final, "best_epoch": best_epoch}
    ray.tune.report(make_record([replicate], ctx.space.budget.aggregate, ctx.bounds, watched_metrics(ctx)).to_result())


@dataclass(frozen=True)
class ConfirmJob:
    """One run of the confirmation stage: the search trial whose point it runs, the point, the
    confirmation seed's index and value."""

    trial_id: str
    params: dict[str, Any]
    index: int
    seed: int

    @property
    def run_id(self) -> str:
        """Its MLflow child's trial id: the same on every attempt (a resumed stage finds its run)."""
        return f"confirm-{self.trial_id}-{self.index}"

    @property
    def tags(self) -> dict[str, str]:
        """Its MLflow child's tags: the confirmation stage, the search trial whose point it runs, its index."""
        return {"unlearn.stage": "confirmation", "unlearn.confirm.trial": self.trial_id,
                "unlearn.confirm.index": str(self.index)}

    def per_item(self, root: Path) -> dict[str, Any]:
        """Its ``per_item.json`` artifact: the run's per-question statistics (one replicate)."""
        doc = load_results(confirm_run_dir(root, self.trial_id, self.index))
        return {"trial_id": self.run_id, "replicates": [
            {"index": self.index, "seed": self.seed, "per_item": doc.get("per_item", {})}]}

    def to_dict(self) -> dict[str, Any]:
        return {"trial_id": self.trial_id, "params": dict(self.params), "index": self.index, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ConfirmJob:
        return cls(str(d["trial_id"]), dict(d["params"]), int(d["index"]), int(d["seed"]))
