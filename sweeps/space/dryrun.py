"""The dry run at load: the RunConfig of initial points, corner combinations and random samples."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sweeps.space.sampling import (
    _build_run_config,
    _fmt,
    define_by_run,
    derive_trial_seed,
)
from unlearn.errors import ConfigError

if TYPE_CHECKING:
    from sweeps.space.schema import Param, SearchSpace


DRY_RUN_SAMPLES = 32
"""Random Optuna samples whose RunConfig is built at load."""
MAX_GRID = 512
"""Combinations of categorical choices checked at load, per bound (beyond it, random samples only)."""

# ------------------------------------------------------------------ dry run


def _dry_run(space: SearchSpace) -> None:
    """Build the RunConfig of initial points, corner combinations and random samples."""
    for i, (label, params) in enumerate(_dry_run_points(space)):
        try:
            _build_run_config(space, params, derive_trial_seed(space.budget.seed, i))
        except ConfigError as e:
            raise ConfigError(
                f"parameters: {label} {_fmt(params)} gives an invalid run config: {e}; give the offending "
                "parameter a `when` condition, narrow its range, or change base"
            ) from None


def _dry_run_points(space: SearchSpace) -> Iterator[tuple[str, dict[str, Any]]]:
    """Initial points first (as Optuna completes them), then corner combinations, then random samples."""
    sampled = _optuna_points(space, len(space.initial_points) + DRY_RUN_SAMPLES)
    yield from sampled[:len(space.initial_points)]
    for bound in ("low", "high"):
        for values in itertools.islice(_grid(space.parameters, 0, {}, bound), MAX_GRID):
            yield f"the combination (numbers at their {bound} bound)", values
    yield from sampled[len(space.initial_points):]


def _optuna_points(space: SearchSpace, n: int) -> list[tuple[str, dict[str, Any]]]:
    """``n`` trials of an in-memory study (RandomSampler(budget.seed)) that starts with the initial points."""
    import optuna

    with _quiet_optuna():
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=space.budget.seed))
        for point in space.initial_points:
            study.enqueue_trial(dict(point))
        suggest = define_by_run(space)
        out = []
        for i in range(n):
            trial = study.ask()
            fixed = suggest(trial) or {}
            label = f"initial_points[{i}]" if i < len(space.initial_points) else "the random sample"
            out.append((label, {**trial.params, **fixed}))
    return out


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's INFO logs ("A new study created...") for the dry run only."""
    import optuna

    old = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(old)


def _grid(params: tuple[Param, ...], i: int, values: dict[str, Any], bound: str) -> Iterator[dict[str, Any]]:
    """Every combination of categorical choices (honouring ``when``), numbers at ``bound``."""
    if i == len(params):
        yield dict(values)
        return
    p = params[i]
    if not p.applies(values):
        yield from _grid(params, i + 1, values, bound)
        return
    for v in _corner_values(p, bound):
        values[p.name] = v
        yield from _grid(params, i + 1, values, bound)
    del values[p.name]


def _corner_values(p: Param, bound: str) -> tuple[Any, ...]:
    if p.distribution in ("categorical", "fixed"):
        return p.options
    if p.distribution == "int":
        return (int(p.low),) if bound == "low" else (p.int_high,)
    return (p.low,) if bound == "low" else (p.high,)
