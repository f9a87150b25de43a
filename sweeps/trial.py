"""The trial function: what one Ray Tune trial runs, a sampled point's replicates and its record.

Each replicate is a Ray Train run (``sweeps.train.run_unlearning``) with its own seed, one after the
other in the trial's process; the trial then writes its record (``sweeps.record``) and reports it to
Tune: that is the value Optuna is told, MLflow keeps, and ``report`` and ``export-best`` read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sweeps.layout import (
    CONFIG_FILE,
    RECORD_FILE,
    read_json,
    replicate_dir,
    storage_child,
    trial_dir,
    write_json_atomic,
)
from sweeps.record import Bound, make_record, record_result, replicate_result
from sweeps.space import SearchSpace, replicate_seeds, trial_run_config
from unlearn.config import to_dict


@dataclass(frozen=True)
class TrialContext:
    """Everything a trial needs besides its sampled parameters (travels via tune.with_parameters).

    ``bounds``: the space's constraints resolved after prepare (relative ones against the target model).
    """

    space: SearchSpace
    root: str
    ray_storage: str
    bounds: tuple[Bound, ...] = ()


def load_record(trial: Path) -> dict[str, Any] | None:
    """The trial's record if it finished (``record.json``), else None."""
    path = trial / RECORD_FILE
    return read_json(path, "the trial's record") if path.is_file() else None


def run_trial(config: dict[str, Any], ctx: TrialContext) -> None:
    """The Tune trainable (a plain function): the point's replicates, then its record, reported last."""
    import ray.tune

    trial_id = ray.tune.get_context().get_trial_id()
    out = trial_dir(Path(ctx.root), trial_id)
    if (record := load_record(out)) is not None:
        # The driver died after this trial finished but before Tune recorded it: replay, never re-run.
        ray.tune.report({**record_result(record), "replayed": 1})
        return
    from unlearn.train.prepare import prepare

    seeds = replicate_seeds(ctx.space, config)
    # the same for every replicate (the seed is not part of it); the driver prepared the base: announced there
    prepared = prepare(trial_run_config(ctx.space, config, seed=seeds[0]), announce_cached=False)
    replicates = []
    for index, seed in enumerate(seeds):
        final, best_epoch, run = _run_replicate(ctx, config, trial_id, index, seed, len(seeds), prepared)
        replicates.append({"index": index, "seed": seed, "dir": str(run), "final": final, "best_epoch": best_epoch})
        if len(seeds) > 1:
            ray.tune.report(replicate_result(index, seed, final))
    space = ctx.space
    watched = list(dict.fromkeys([*space.metric_names, *(b.metric for b in ctx.bounds)]))
    record = make_record(replicates, space.budget.aggregate, ctx.bounds, watched)
    write_json_atomic(out / RECORD_FILE, record)
    ray.tune.report(record_result(record))


def _run_replicate(ctx: TrialContext, params: dict[str, Any], trial_id: str, index: int, seed: int,
                   replicates: int, prepared) -> tuple[dict[str, Any], int | None, Path]:
    """One replicate's run (or its results, when a resumed trial had finished it): final metrics, kept epoch."""
    from sweeps.results import finished_results, load_results
    from sweeps.train import run_unlearning

    run = replicate_dir(trial_dir(Path(ctx.root), trial_id), index, replicates)
    if (done := finished_results(run)) is None:
        cfg = trial_run_config(ctx.space, params, seed=seed)
        write_json_atomic(run / CONFIG_FILE, to_dict(cfg))
        name = f"trial-{trial_id}" if replicates == 1 else f"trial-{trial_id}-r{index}"
        # One replicate reports its epochs to Tune (ASHA decides on them, MLflow keeps their history); with
        # several, each replicate's end is reported instead. ASHA's stop must not let a run train on.
        run_unlearning(cfg, run, prepared=prepared, name=name, storage_path=storage_child(ctx.ray_storage, "train"),
                       tune_trial=replicates == 1, wait_for_tune=ctx.space.early_stopping is not None,
                       max_failures=1)
        done = load_results(run)
    return done["final"], done.get("best_epoch"), run
