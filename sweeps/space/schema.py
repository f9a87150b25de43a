"""Search spaces: a small YAML schema, validated at load, and its Optuna define-by-run function.

A search space names a partial run config (``base``), the run-config keys to sample (``parameters``),
what to optimise (``objectives``), optional ASHA early stopping, points to evaluate first and a budget.
No Ray here: the Tuner is built on top of ``define_by_run``, ``tune_metric`` / ``tune_mode``, the
``initial_points`` and the ``budget``.

Schema::

    name: satimp                  # required: letters, digits, - and _
    description: free text        # optional
    base:                         # a partial RunConfig: the keys of an `unlearn-sweep run` YAML.
      data: {benchmark: generated, split: forget10}   # Without `method`, the default SatImp-GD is
      method: {weighting: satimp, objective: gd}      # the base (as for `unlearn-sweep run`).
      optim: {epochs: 10, lr: 3.0e-3}
    parameters:                   # required: dotted RunConfig keys, sampled in this order
      method.beta1: {distribution: uniform, low: 0.5, high: 8.0}
      optim.lr: {distribution: loguniform, low: 1.0e-4, high: 1.0e-2}
      optim.epochs: {distribution: int, low: 3, high: 12, step: 1}    # step: optional, default 1
      method.weighting: {distribution: categorical, choices: [simsat, simimp, satimp, uniform]}
      method.beta2: {distribution: uniform, low: 0.0, high: 1.0,
                     when: {method.weighting: [satimp, simimp]}}
      seed: {distribution: fixed, value: 0}
    objectives:                   # required, one or more (several: a Pareto front)
      - {metric: forget_quality, direction: maximize}
    early_stopping:               # optional: ASHA on a per-epoch metric; needs base epoch_eval: true
      {metric: forget_quality, mode: max, grace_period: 2, reduction_factor: 2}
    initial_points:               # optional: evaluated first, in this order
      - {method.beta1: 5.0, method.beta2: 0.1, optim.lr: 3.0e-3}
    constraints:                  # optional: a trial is feasible if its metrics of record keep every bound
      - {metric: model_utility, min: 0.8}                       # absolute (or max: ...)
      - {metric: model_utility, min_fraction_of_target: 0.95}   # relative to the prepared target model
    budget: {num_samples: 8, max_concurrent: 2, time_budget_s: null, seed: 0,
             replicates: 1, aggregate: mean}   # replicates: seeds per point; its value: their mean | median

Rules:
    * A parameter is a leaf of RunConfig (``optim.lr``, ``method.beta1``, ``seed``); its value
      replaces the base's, and ``method.*`` keys merge into ``base.method``.
    * Each distribution takes its own keys only: uniform / loguniform ``low, high`` (loguniform:
      ``low > 0``), int ``low, high, step`` (``high - low`` a multiple of ``step``), categorical
      ``choices`` (scalars), fixed ``value``. Every distribution may carry ``when``.
    * ``when: {param: [values...]}`` samples the parameter only if every named parameter was sampled
      with one of the values. Conditions refer to EARLIER categorical or fixed parameters; a parameter
      whose own condition failed counts as not sampled.
    * ``fixed`` parameters are constants returned by the define-by-run function (Ray merges them
      into the trial config); they are not part of ``trial.params``.
    * objective and early-stopping metrics are the base benchmark's (its ``MetricTable``), and
      ``direction`` / ``mode`` must agree with the metric's goal there.
      metrics that need generation (the table's ``needs_generation``: ROUGE, model utility) need ``eval.rouge: true``.
    * An initial point sets sampled parameters only; the ones it leaves out are sampled. Each key must
      apply to the point (its ``when`` holds given the point's values).
    * ``budget.num_samples`` counts the initial points too.
    * A trial's value of record (what Optuna is told, MLflow's ``record/<metric>``, the report, the
      export) is its runs' final metrics (the kept epoch under ``keep_best_by``), aggregated over its
      ``budget.replicates``. Infeasible trials (a constraint violated) are never chosen as best; Optuna's
      constrained TPE receives the violations. Replicates exclude ``early_stopping`` (ASHA decides on one
      run's epochs) and a ``seed`` parameter (the replicates' seeds are derived).

At load, ``load_space`` checks all of the above and then dry-runs the space: it builds the RunConfig of
every initial point, of every combination of categorical choices with numeric parameters at their
bounds (up to ``MAX_GRID`` per bound), and of ``DRY_RUN_SAMPLES`` random Optuna samples. A combination
that gives an invalid RunConfig (e.g. ``method.beta2`` sampled while the weighting is ``uniform``) is
reported with its parameter values. Every error is a ConfigError naming the file and the field.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml

from unlearn.config import to_dict
from unlearn.errors import ConfigError, check_range, unknown_name
from unlearn.train.config import RunConfig, run_config_from_dict

if TYPE_CHECKING:
    import optuna

from sweeps.record import Bound, is_value
from sweeps.space.keys import _same
from sweeps.space.sampling import _MASK32

MAX_REPLICATES = 100
"""``budget.replicates`` at most (each replicate is a full run)."""

Distribution = Literal["uniform", "loguniform", "int", "categorical", "fixed"]
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)

# Keys each distribution takes besides `distribution` and `when`; the required ones.
_KEYS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"), "loguniform": ("low", "high"), "int": ("low", "high", "step"),
    "categorical": ("choices",), "fixed": ("value",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {**_KEYS, "int": ("low", "high")}



# ------------------------------------------------------------------ typed objects


@dataclass(frozen=True)
class Param:
    """One sampled run-config key.

    Attributes:
        name: dotted RunConfig key, e.g. ``method.beta1``.
        distribution: uniform, loguniform, int, categorical or fixed.
        low, high: bounds of uniform / loguniform / int (inclusive).
        step: int step (default 1); None for the other distributions.
        choices: categorical values (scalars).
        value: the fixed value.
        when: ``{earlier_param: (values...)}``: sample only if every earlier parameter took one of them.
    """

    name: str
    distribution: Distribution
    low: float | None = None
    high: float | None = None
    step: int | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    when: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise unknown_name("distribution", self.distribution, DISTRIBUTIONS, f"parameters.{self.name}")
        if self.distribution == "int" and self.step is None:
            object.__setattr__(self, "step", 1)
        if self.distribution == "categorical":
            self._check_choices()
        elif self.distribution != "fixed":
            self._check_bounds()

    def _check_bounds(self) -> None:
        where = f"parameters.{self.name}"
        if self.low is None or self.high is None:
            raise ConfigError(f"{where}: distribution {self.distribution!r} needs low and high")
        if self.distribution == "int":
            for key in ("low", "high", "step"):
                v = getattr(self, key)
                if isinstance(v, bool) or not isinstance(v, int):
                    raise ConfigError(f"{where}.{key}={v!r} must be an integer (distribution int)")
            check_range(f"{where}.step", self.step, low=1)
        if not self.low < self.high:
            raise ConfigError(f"{where}: low={self.low!r} must be < high={self.high!r}")
        if self.distribution == "loguniform" and self.low <= 0:
            raise ConfigError(f"{where}.low={self.low!r}: loguniform needs low > 0; "
                              "valid: a positive low, or distribution uniform for ranges that include 0")
        if self.distribution == "int" and (self.high - self.low) % self.step:
            raise ConfigError(f"{where}: high - low = {self.high - self.low} is not a multiple of "
                              f"step={self.step}; valid: e.g. high={self.int_high}")

    def _check_choices(self) -> None:
        where = f"parameters.{self.name}.choices"
        if not self.choices:
            raise ConfigError(f"{where}: categorical needs at least one choice, e.g. choices: [a, b]")
        for v in self.choices:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise ConfigError(f"{where}: {v!r} is not a scalar; valid: strings, numbers, booleans, null")
        dups = [v for i, v in enumerate(self.choices) if v in self.choices[:i]]
        if dups:
            raise ConfigError(f"{where}: {dups[0]!r} is listed twice")

    @property
    def int_high(self) -> int:
        """The largest value an int parameter reaches: ``low + k * step <= high``."""
        return int(self.low + (self.high - self.low) // self.step * self.step)

    @property
    def options(self) -> tuple[Any, ...]:
        """The values a categorical or fixed parameter takes (empty for numeric ones)."""
        return {"categorical": self.choices, "fixed": (self.value,)}.get(self.distribution, ())

    def describe(self) -> str:
        """The valid values in words, for error messages."""
        if self.distribution in ("categorical", "fixed"):
            return "one of " + ", ".join(map(repr, self.options))
        step = f" step {self.step}" if self.distribution == "int" else ""
        return f"{self.distribution} in [{self.low}, {self.high}]{step}"

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this parameter can take."""
        if self.distribution in ("categorical", "fixed"):
            return any(_same(value, o) for o in self.options)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.distribution == "int":
            return isinstance(value, int) and self.low <= value <= self.high and (value - self.low) % self.step == 0
        return self.low <= value <= self.high

    def applies(self, values: Mapping[str, Any]) -> bool:
        """Whether the ``when`` conditions hold for the values sampled so far."""
        return all(name in values and values[name] in allowed for name, allowed in self.when.items())

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample with ``trial.suggest_*``; a fixed parameter returns its value without sampling."""
        d = self.distribution
        if d == "fixed":
            return self.value
        if d == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if d == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=self.step)
        return trial.suggest_float(self.name, self.low, self.high, log=d == "loguniform")

    def to_dict(self) -> dict[str, Any]:
        """The YAML form (without the name, which is its key under ``parameters``)."""
        out: dict[str, Any] = {"distribution": self.distribution}
        for key in _KEYS[self.distribution]:
            v = getattr(self, key)
            out[key] = list(v) if isinstance(v, tuple) else v
        if self.when:
            out["when"] = {k: list(v) for k, v in self.when.items()}
        return out


@dataclass(frozen=True)
class Objective:
    """A metric to optimise; ``direction`` must agree with the metric's goal in the benchmark's table
    (checked with the space, which knows the benchmark)."""

    metric: str
    direction: Literal["maximize", "minimize"]


@dataclass(frozen=True)
class EarlyStopping:
    """ASHA on a metric reported after every epoch (needs ``epoch_eval: true`` in the base)."""

    metric: str
    mode: Literal["max", "min"]
    grace_period: int = 1
    reduction_factor: int = 2

    def __post_init__(self) -> None:
        check_range("grace_period", self.grace_period, low=1)
        check_range("reduction_factor", self.reduction_factor, low=2)


@dataclass(frozen=True)
class Confirm:
    """The confirmation stage (``sweeps.confirm``): after the search, the ``top`` best feasible points are
    raced on fresh common seeds no search trial used, ``runs`` runs in all at most."""

    top: int = 3
    runs: int = 12

    def __post_init__(self) -> None:
        check_range("top", self.top, low=2, high=MAX_CONFIRM_TOP)
        if self.runs < self.top * MIN_CONFIRM_ROUNDS:
            raise ConfigError(f"confirm.runs={self.runs!r} is too few for confirm.top={self.top}: the race gives "
                              f"every point {MIN_CONFIRM_ROUNDS} seeds before its first test; valid: runs >= "
                              f"{self.top * MIN_CONFIRM_ROUNDS} (top x {MIN_CONFIRM_ROUNDS})")
        check_range("runs", self.runs, low=1, high=MAX_CONFIRM_RUNS)


MAX_CONFIRM_TOP = 20
MAX_CONFIRM_RUNS = 10_000
MIN_CONFIRM_ROUNDS = 3  # sweeps.racing.FIRST_TEST (the schema does not import the race)


@dataclass(frozen=True)
class Budget:
    """How many trials, how many at once, a wall-clock limit (None: none) and the sampler's seed.

    ``replicates``: runs per sampled point (``sweeps.space.replicate_seeds``); the trial's value is their
    ``aggregate`` (mean or median), reported with a 95 % interval. ``seeds``: ``common`` (replicate r of
    every point runs the same seed, a function of the sweep seed and r: comparisons are paired) or
    ``per_point`` (each point's seeds derive from the point too; the default: it selected better in
    ``bench.selection_accuracy``, BENCHMARKS "Choosing under noise", because a constraint's seed noise then
    misjudges points one by one, not all of them together; the confirmation stage's seeds are common either
    way). ``adaptive``: ``replicates`` is a maximum, and a
    point gets another replicate only while it can still beat the incumbent (``sweeps.racing.can_still_beat``).
    ``confirm``: the confirmation stage (``Confirm``), off when null.
    """

    num_samples: int = 8
    max_concurrent: int = 2
    time_budget_s: float | None = None
    seed: int = 0
    replicates: int = 1
    aggregate: Literal["mean", "median"] = "mean"
    seeds: Literal["common", "per_point"] = "per_point"
    adaptive: bool = False
    confirm: Confirm | None = None

    def __post_init__(self) -> None:
        check_range("num_samples", self.num_samples, low=1)
        check_range("max_concurrent", self.max_concurrent, low=1)
        if self.time_budget_s is not None:
            check_range("time_budget_s", self.time_budget_s, low=0.0, low_inclusive=False)
        check_range("seed", self.seed, low=0, high=_MASK32)
        check_range("replicates", self.replicates, low=1, high=MAX_REPLICATES)
        if self.aggregate not in ("mean", "median"):
            raise ConfigError(f"budget.aggregate={self.aggregate!r} is not valid; valid: mean, median")


_BOUND_KEYS = ("min", "max", "min_fraction_of_target", "max_fraction_of_target")


@dataclass(frozen=True)
class Constraint:
    """A bound a trial's metric of record must keep to be feasible (never chosen as best otherwise).

    Exactly one of: ``min`` / ``max`` (absolute), ``min_fraction_of_target`` / ``max_fraction_of_target``
    (a fraction of the prepared target model's value of the metric, known after prepare).
    """

    metric: str
    min: float | None = None
    max: float | None = None
    min_fraction_of_target: float | None = None
    max_fraction_of_target: float | None = None

    def __post_init__(self) -> None:
        given = [k for k in _BOUND_KEYS if getattr(self, k) is not None]
        if len(given) != 1:
            raise ConfigError(f"constraint on {self.metric!r} sets {', '.join(given) or 'no bound'}; valid: exactly "
                              f"one of {', '.join(_BOUND_KEYS)}, e.g. {{metric: {self.metric}, min: 0.8}}")
        value = getattr(self, given[0])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"constraint on {self.metric!r}: {given[0]}={value!r} must be a finite number")
        if given[0].endswith("_of_target"):
            check_range(given[0], value, low=0.0, low_inclusive=False)

    @property
    def key(self) -> str:
        return next(k for k in _BOUND_KEYS if getattr(self, k) is not None)

    @property
    def relative(self) -> bool:
        return self.key.endswith("_of_target")

    def resolve(self, target: Mapping[str, Any] | None) -> Bound:
        """The absolute bound; ``target``: the prepared target model's metrics (needed when relative)."""
        kind = "min" if self.key.startswith("min") else "max"
        value = float(getattr(self, self.key))
        if not self.relative:
            return Bound(self.metric, kind, value, "absolute")
        base = (target or {}).get(self.metric)
        if not is_value(base):
            raise ConfigError(f"constraint {self.key}={value} on {self.metric!r}: the prepared target model has no "
                              f"value of {self.metric!r} (its metrics: {', '.join(sorted(target or {})) or 'none'}); "
                              "valid: an absolute min / max")
        return Bound(self.metric, kind, value * base, f"{value:g} x target {base:.4g}")

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, self.key: getattr(self, self.key)}


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring for the YAML schema).

    ``base`` is plain data (a partial RunConfig); ``source`` is the file it was loaded from, used in
    error messages. ``load_space`` / ``space_from_dict`` validate it once built (``validate_space``:
    every cross-field check and the dry run); construction itself checks nothing.
    """

    name: str
    description: str
    base: dict[str, Any]
    parameters: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    early_stopping: EarlyStopping | None = None
    constraints: tuple[Constraint, ...] = ()
    initial_points: tuple[dict[str, Any], ...] = ()
    budget: Budget = field(default_factory=Budget)
    source: str = field(default="", compare=False)

    @property
    def param_map(self) -> dict[str, Param]:
        return {p.name: p for p in self.parameters}

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(o.metric for o in self.objectives)

    @property
    def directions(self) -> tuple[str, ...]:
        """Optuna directions, one per objective."""
        return tuple(o.direction for o in self.objectives)

    @property
    def is_multi_objective(self) -> bool:
        return len(self.objectives) > 1

    def signed_values(self, metrics: Mapping[str, Any], first_only: bool = False) -> list[float] | None:
        """The objectives in ``metrics`` (only the first with ``first_only``), each signed so that higher is
        better; None when one is missing, not a number or NaN."""
        objectives = self.objectives[:1] if first_only else self.objectives
        out = []
        for o in objectives:
            v = metrics.get(o.metric)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
                return None
            out.append(float(v) if o.direction == "maximize" else -float(v))
        return out

    @property
    def tune_metric(self) -> str | list[str]:
        """Ray Tune / OptunaSearch ``metric``: a name, or a list for several objectives."""
        names = list(self.metric_names)
        return names if self.is_multi_objective else names[0]

    @property
    def tune_mode(self) -> str | list[str]:
        """Ray Tune / OptunaSearch ``mode`` ("max"/"min"), a list for several objectives."""
        modes = ["max" if d == "maximize" else "min" for d in self.directions]
        return modes if self.is_multi_objective else modes[0]

    @functools.cached_property
    def base_config(self) -> RunConfig:
        """The RunConfig of the base alone (built once per space)."""
        return run_config_from_dict(self.base)

    @property
    def max_epochs(self) -> int:
        """The most epochs a trial can run (ASHA's ``max_t``)."""
        base = self.base_config.optim.epochs
        p = self.param_map.get("optim.epochs")
        if p is None:
            return base
        if p.distribution == "int":
            top = p.int_high
        else:
            top = max((v for v in p.options if isinstance(v, int) and not isinstance(v, bool)), default=base)
        return max(top, base) if p.when else top

    def to_dict(self) -> dict[str, Any]:
        """The YAML schema's plain-data form (``space_from_dict(space.to_dict()) == space``)."""
        out: dict[str, Any] = {
            "name": self.name, "description": self.description, "base": copy.deepcopy(self.base),
            "parameters": {p.name: p.to_dict() for p in self.parameters},
            "objectives": [to_dict(o) for o in self.objectives],
        }
        if self.early_stopping is not None:
            out["early_stopping"] = to_dict(self.early_stopping)
        out["initial_points"] = [dict(p) for p in self.initial_points]
        if self.constraints:
            out["constraints"] = [c.to_dict() for c in self.constraints]
        out["budget"] = to_dict(self.budget)
        return out

    def to_yaml(self) -> str:
        """YAML text that ``load_space`` reads back into an equal space."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=110)


