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
    replicate_dir,
    storage_child,
    trial_dir,
    write_json_atomic,
)
from sweeps.plan import ReplicatePlan, resolve_trial
from sweeps.record import Bound, make_record, replicate_result
from sweeps.ray_run import run_unlearning
from sweeps.results import finished_results, load_record
from sweeps.space import SearchSpace
from unlearn.config import to_dict
from unlearn.errors import UnlearnError
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
    watched = list(dict.fromkeys([*ctx.space.metric_names, *(b.metric for b in ctx.bounds)]))
    record = make_record(replicates, ctx.space.budget.aggregate, ctx.bounds, watched)
    write_json_atomic(out / RECORD_FILE, record.to_dict())
    ray.tune.report(record.to_result())


def _run_replicate(ctx: TrialContext, trial_id: str, replicate: ReplicatePlan, replicates: int,
                   prepared: Prepared) -> tuple[dict[str, Any], int | None, Path]:
    """One replicate's run (or its results, when a resumed trial had finished it): final metrics, kept epoch."""
    run = replicate_dir(trial_dir(Path(ctx.root), trial_id), replicate.index, replicates)
    if (done := finished_results(run)) is not None:
        return done["final"], done.get("best_epoch"), run
    cfg = replicate.config
    write_json_atomic(run / CONFIG_FILE, to_dict(cfg))
    name = f"trial-{trial_id}" if replicates == 1 else f"trial-{trial_id}-r{replicate.index}"
    # One replicate reports its epochs to Tune (ASHA decides on them, MLflow keeps their history); with
    # several, each replicate's end is reported instead. ASHA's stop must not let a run train on.
    result = run_unlearning(cfg, run, prepared=prepared, name=name,
                            storage_path=storage_child(ctx.ray_storage, "train"), tune_trial=replicates == 1,
                            wait_for_tune=ctx.space.early_stopping is not None, max_failures=1)
    if result is None:  # pragma: no cover -- run_unlearning returns None only when asked to stop early
        raise UnlearnError(f"replicate {replicate.index} of trial {trial_id} wrote no results ({run})")
    return result.metrics, result.best_epoch, run
