"""Sampling a space: its Optuna define-by-run function, trial seeds and each trial's RunConfig."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from unlearn.errors import ConfigError, check_range
from unlearn.train.config import RunConfig, run_config_from_dict

if TYPE_CHECKING:
    import optuna

from sweeps.space.keys import _check_run_config_key, run_config_keys

if TYPE_CHECKING:
    from sweeps.space.schema import Param, SearchSpace


_MASK32 = 0xFFFFFFFF

# ------------------------------------------------------------------ sampling and trial configs


@dataclass(frozen=True)
class DefineByRun:
    """The picklable define-by-run function of a space (Ray pickles its searcher, ``space`` included)."""

    parameters: tuple[Param, ...]

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for p in self.parameters:
            if not p.applies(values):
                continue
            values[p.name] = p.suggest(trial)
            if p.distribution == "fixed":
                fixed[p.name] = p.value
        return fixed or None


def define_by_run(space: SearchSpace) -> Callable[[optuna.Trial], dict[str, Any] | None]:
    """The Optuna define-by-run function of ``space`` (for ``OptunaSearch(space=...)``).

    It suggests the parameters in order with ``trial.suggest_float / int / categorical`` only, skipping
    those whose ``when`` does not hold, and returns the fixed parameters that apply (None if there are
    none): Ray merges them into the trial config. No computation besides suggestions and conditions.
    The function is a picklable object: ``OptunaSearch.save`` pickles it with the searcher's state.
    """
    return DefineByRun(space.parameters)


def trial_run_config(space: SearchSpace, params: Mapping[str, Any], *, seed: int) -> RunConfig:
    """The validated RunConfig of one trial: ``base`` updated by ``params``, with ``seed``.

    Args:
        params: dotted run-config keys (a trial's sampled and fixed parameters; any leaf key is
            accepted). ``method.*`` keys merge into ``base.method``.
        seed: the trial's seed (see ``derive_trial_seed``), unless ``params`` sets ``seed``.

    Raises:
        ConfigError: naming the parameters when they give an invalid run config.
    """
    try:
        return _build_run_config(space, params, seed)
    except ConfigError as e:
        raise type(e)(f"trial parameters {_fmt(params)}: {e}") from None


def _build_run_config(space: SearchSpace, params: Mapping[str, Any], seed: int) -> RunConfig:
    check_range("seed", seed, low=0)
    keys = run_config_keys()
    for key in params:
        _check_run_config_key(key, keys, "trial parameters")
    overrides = [(key.split("."), value) for key, value in params.items()]
    if "seed" not in params:
        overrides.append((["seed"], seed))
    return run_config_from_dict(space.base, overrides)


def _fmt(params: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}: {v!r}" for k, v in params.items()) + "}"


def _fmix32(h: int) -> int:
    """MurmurHash3's 32-bit finaliser: a bijection of [0, 2**32) that mixes every bit."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & _MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & _MASK32
    return h ^ (h >> 16)


def derive_trial_seed(sweep_seed: int, trial_number: int) -> int:
    """The seed of trial ``trial_number`` of a sweep seeded ``sweep_seed``: in [0, 2**32).

    ``fmix32(fmix32(sweep_seed * 0x9E3779B9 + 1) + trial_number)`` (mod 2**32). Both steps are
    bijections, so within a sweep the seeds of trial numbers below 2**32 are all distinct; the value
    depends on nothing else (no process hash salt), so it is stable across runs and machines.
    """
    for name, v in (("sweep_seed", sweep_seed), ("trial_number", trial_number)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{name}={v!r} must be an integer")
        check_range(name, v, low=0, high=_MASK32)
    offset = _fmix32((sweep_seed * 0x9E3779B9 + 1) & _MASK32)
    return _fmix32((offset + trial_number) & _MASK32)


def trial_seed(space: SearchSpace, params: dict[str, Any]) -> int:
    """The trial's seed, derived from the sweep seed and the trial's parameters.

    The same parameters give the same run in every launch of a sweep with this seed (and on resume), so
    a sweep is reproducible and the paper's point scores the same whenever it is evaluated. To measure
    seed variance, make ``seed`` a parameter of the space.
    """
    key = json.dumps(params, sort_keys=True, default=str)
    return derive_trial_seed(space.budget.seed, int(hashlib.sha256(key.encode()).hexdigest()[:8], 16))


def replicate_seeds(space: SearchSpace, params: dict[str, Any]) -> list[int]:
    """The seeds of a point's ``budget.replicates`` runs.

    ``budget.seeds: common`` (common random numbers): replicate ``r`` of every point runs the seed
    ``common_seed(sweep seed, r)``, a function of the sweep seed and ``r`` only, so that two points'
    replicates pair seed by seed. ``per_point``: replicate 0 has the trial's seed (``trial_seed``, from
    the point), replicate ``r`` the seed ``derive_trial_seed(trial_seed, r)``.
    """
    if space.budget.seeds == "common":
        return [common_seed(space.budget.seed, r) for r in range(space.budget.replicates)]
    first = trial_seed(space, params)
    return [first] + [derive_trial_seed(first, r) for r in range(1, space.budget.replicates)]


CONFIRM_SEED_OFFSET = 1 << 31  # confirmation seed c is common seed OFFSET + c: never a search replicate's


def common_seed(sweep_seed: int, index: int) -> int:
    """The common seed number ``index`` of a sweep: ``derive_trial_seed(sweep_seed, index)``. Search
    replicates take indices ``0 .. replicates - 1``, the confirmation stage ``CONFIRM_SEED_OFFSET + c``."""
    return derive_trial_seed(sweep_seed, index)


def confirm_seed(space: SearchSpace, index: int) -> int:
    """The confirmation stage's seed number ``index`` (the same for every confirmed point)."""
    return common_seed(space.budget.seed, CONFIRM_SEED_OFFSET + index)
