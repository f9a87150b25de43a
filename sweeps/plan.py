"""A trial's plan: everything its sampled parameters resolve to, built in one place (``resolve_trial``).

Its replicates' run configs and seeds, the resources its process holds and the parameters its MLflow run
records. The trial builds its plan once, runs it and writes it (``trials/<id>/plan.json``: the trial's
resolved config); the driver asks the same function, once per trial (``TrialPlans``), for the resources
and MLflow parameters it needs before the trial runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sweeps.space import SearchSpace, replicate_seeds, trial_run_config
from unlearn.config import to_dict
from unlearn.train.config import RunConfig, ScalingConfig

DRIVER_CPU = 0.1  # a trial's own process only launches and watches its Ray Train workers (launcher ray_train)


def trial_resources(scaling: ScalingConfig) -> dict[str, float]:
    """What a trial's own process holds: the run itself with ``local`` (one CPU worker), a driver's share
    with ``ray_train`` (whose workers hold their own)."""
    return {"CPU": scaling.cpus_per_worker} if scaling.resolved_launcher == "local" else {"CPU": DRIVER_CPU}


@dataclass(frozen=True)
class ReplicatePlan:
    """One run of a trial's point: its index, its seed and its validated run config."""

    index: int
    seed: int
    config: RunConfig


@dataclass(frozen=True)
class TrialPlan:
    """A sampled point resolved: ``params`` (sampled and fixed, as Tune gives them), its replicates (the
    first one's config is also what ``prepare`` is asked for: the seed is not part of the prepare key),
    the trial process's resources and the dotted parameters its MLflow run records."""

    params: dict[str, Any]
    replicates: tuple[ReplicatePlan, ...]

    @property
    def config(self) -> RunConfig:
        """Replicate 0's config: the trial's run config (the only one, with one replicate)."""
        return self.replicates[0].config

    @property
    def resources(self) -> dict[str, float]:
        return trial_resources(self.config.scaling)

    @property
    def mlflow_params(self) -> dict[str, Any]:
        """Every resolved parameter of the trial (replicate 0's whole run config, dotted), and which were
        sampled."""
        # the driver's alone: importing sweeps.tracking would load MLflow into every trial's process
        from sweeps.tracking import flatten

        return {**flatten(to_dict(self.config)), "trial.sampled": ",".join(sorted(self.params))}

    def to_dict(self) -> dict[str, Any]:
        """``plan.json``: the sampled parameters and each replicate's seed and resolved config."""
        return {"params": dict(self.params),
                "replicates": [{"index": r.index, "seed": r.seed, "config": to_dict(r.config)}
                               for r in self.replicates]}


def resolve_trial(space: SearchSpace, params: Mapping[str, Any], seeds: Sequence[int] | None = None) -> TrialPlan:
    """The plan of the point ``params`` of ``space``: each replicate's seed (``replicate_seeds``; ``seeds``:
    these instead, as the confirmation stage's runs) and run config (``trial_run_config``), validated.

    Raises:
        ConfigError: naming the parameters, when they give an invalid run config.
    """
    params = dict(params)
    seeds = replicate_seeds(space, params) if seeds is None else list(seeds)
    return TrialPlan(params, tuple(ReplicatePlan(i, seed, trial_run_config(space, params, seed=seed))
                                   for i, seed in enumerate(seeds)))


class TrialPlans:
    """The driver's plans, one per sampled point, each resolved once (Tune asks for a trial's resources,
    then the MLflow callback for its parameters). Picklable: Tune pickles both into its state; the
    plans themselves are rebuilt on demand after a restore."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self._plans: dict[str, TrialPlan] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"space": self.space, "_plans": {}}

    def get(self, params: Mapping[str, Any]) -> TrialPlan:
        key = repr(sorted(params.items()))
        if (plan := self._plans.get(key)) is None:
            plan = self._plans[key] = resolve_trial(self.space, params)
        return plan
