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
    budget: {num_samples: 8, max_concurrent: 2, time_budget_s: null, seed: 0}

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

At load, ``load_space`` checks all of the above and then dry-runs the space: it builds the RunConfig of
every initial point, of every combination of categorical choices with numeric parameters at their
bounds (up to ``MAX_GRID`` per bound), and of ``DRY_RUN_SAMPLES`` random Optuna samples. A combination
that gives an invalid RunConfig (e.g. ``method.beta2`` sampled while the weighting is ``uniform``) is
reported with its parameter values. Every error is a ConfigError naming the file and the field.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import itertools
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args, get_origin, get_type_hints

import yaml

from unlearn.config import apply_overrides, from_dict, load_yaml, parse_override, to_dict
from unlearn.errors import ConfigError, check_range, close_matches, unknown_name
from unlearn.train.config import RunConfig, run_config_from_dict

if TYPE_CHECKING:
    import optuna

Distribution = Literal["uniform", "loguniform", "int", "categorical", "fixed"]
DISTRIBUTIONS: tuple[str, ...] = get_args(Distribution)

# Keys each distribution takes besides `distribution` and `when`; the required ones.
_KEYS: dict[str, tuple[str, ...]] = {
    "uniform": ("low", "high"), "loguniform": ("low", "high"), "int": ("low", "high", "step"),
    "categorical": ("choices",), "fixed": ("value",),
}
_REQUIRED: dict[str, tuple[str, ...]] = {**_KEYS, "int": ("low", "high")}

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "name", "description", "base", "parameters", "objectives", "early_stopping", "initial_points", "budget",
)
_REQUIRED_TOP_LEVEL = ("name", "parameters", "objectives")
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

DRY_RUN_SAMPLES = 32
"""Random Optuna samples whose RunConfig is built at load."""
MAX_GRID = 512
"""Combinations of categorical choices checked at load, per bound (beyond it, random samples only)."""
SPACES_DIR = Path(__file__).resolve().parents[1] / "search_spaces"
"""The search spaces shipped with the project."""

_MASK32 = 0xFFFFFFFF


# ------------------------------------------------------------------ run-config keys


@functools.cache
def run_config_keys() -> Mapping[str, Any]:
    """Every dotted leaf key of RunConfig with its type hint, e.g. ``{"optim.lr": float, "seed": int}``."""
    return MappingProxyType(_leaves(RunConfig, ""))


def _leaves(cls: type, prefix: str) -> dict[str, Any]:
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(_leaves(tp, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = tp
    return out


def _check_run_config_key(key: str, keys: Mapping[str, Any], where: str) -> None:
    """Raise a ConfigError naming ``where`` and the valid keys nearest to ``key`` unless it is a leaf."""
    if key in keys:
        return
    section = key.split(".")[0]
    in_section = [k for k in keys if k.startswith(section + ".")]
    if key == section and in_section:
        raise ConfigError(f"{where}: {key!r} is a section of the run config, not a value; "
                          f"valid keys: {', '.join(in_section)}")
    hint = close_matches(key, keys)
    extra = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
    valid = in_section or list(keys)
    raise ConfigError(f"{where}: {key!r} is not a run-config key{extra}; valid: {', '.join(valid)}")


def _numeric_kind(tp: Any) -> str | None:
    """"int" or "float" for a (possibly optional) numeric field type, else None."""
    args = [a for a in get_args(tp) if a is not type(None)] if get_origin(tp) is not None else [tp]
    if len(args) == 1 and args[0] in (int, float):
        return args[0].__name__
    return None


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True != 1`` here)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b and (type(a) is type(b) or all(isinstance(x, (int, float)) for x in (a, b)))


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
class Budget:
    """How many trials, how many at once, a wall-clock limit (None: none) and the sampler's seed."""

    num_samples: int = 8
    max_concurrent: int = 2
    time_budget_s: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        check_range("num_samples", self.num_samples, low=1)
        check_range("max_concurrent", self.max_concurrent, low=1)
        if self.time_budget_s is not None:
            check_range("time_budget_s", self.time_budget_s, low=0.0, low_inclusive=False)
        check_range("seed", self.seed, low=0, high=_MASK32)


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space (see the module docstring for the YAML schema).

    ``base`` is plain data (a partial RunConfig); ``source`` is the file it was loaded from, used in
    error messages. Construction validates everything, including the dry run.
    """

    name: str
    description: str
    base: dict[str, Any]
    parameters: tuple[Param, ...]
    objectives: tuple[Objective, ...]
    early_stopping: EarlyStopping | None = None
    initial_points: tuple[dict[str, Any], ...] = ()
    budget: Budget = field(default_factory=Budget)
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        try:
            _validate(self)
        except ConfigError as e:
            raise type(e)(f"{self.source}: {e}" if self.source else str(e)) from None

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

    @property
    def base_config(self) -> RunConfig:
        """The RunConfig of the base alone."""
        return run_config_from_dict(copy.deepcopy(self.base))

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
        out["budget"] = to_dict(self.budget)
        return out

    def to_yaml(self) -> str:
        """YAML text that ``load_space`` reads back into an equal space."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=None, width=110)


# ------------------------------------------------------------------ parsing


def resolve_space_path(name_or_path: str | Path) -> Path:
    """A file path as is, or the name of a shipped space (``satimp`` -> ``search_spaces/satimp.yaml``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = SPACES_DIR / f"{name_or_path}.yaml"
    if path.suffix == "" and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))
    raise ConfigError(f"search space {str(name_or_path)!r} not found: not a file, nor a shipped space; "
                      f"shipped: {', '.join(names)}")


def load_space(path: str | Path, overrides: Sequence[str] = ()) -> SearchSpace:
    """Read a search-space YAML, apply dotted overrides to it, validate everything and dry-run it.

    Args:
        path: a YAML file, or the name of a shipped space (see ``resolve_space_path``).
        overrides: ``key=value`` strings on the YAML, e.g. ``budget.num_samples=4``,
            ``base.optim.epochs=3``, ``parameters.optim.lr.high=0.02`` or
            ``parameters.optim.weight_decay={distribution: uniform, low: 0, high: 0.1}`` (a new
            parameter, appended) or ``parameters.optim.epochs=null`` (removes it).

    Raises:
        ConfigError: naming the file and the field, and what would be valid.
    """
    path = resolve_space_path(path)
    data = load_yaml(path)
    try:
        data = _apply_space_overrides(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return space_from_dict(_absolute_data_paths(data), source=str(path))


def _absolute_data_paths(data: Any) -> Any:
    """``base.data.path`` / ``importance_path`` made absolute (from the current directory) here, in the
    driver: each trial's process runs in its own working directory, where a relative path means nothing."""
    section = data.get("base", {}).get("data") if isinstance(data, Mapping) and isinstance(data.get("base"), Mapping) else None
    if not isinstance(section, dict):
        return data
    for key in ("path", "importance_path"):
        if isinstance(section.get(key), str):
            section[key] = str(Path(section[key]).expanduser().resolve())
    return data


def space_from_dict(data: Mapping[str, Any], *, source: str = "") -> SearchSpace:
    """Build a validated SearchSpace from the YAML schema's plain data; errors start with ``source``."""
    try:
        kwargs = _parse(data)
    except ConfigError as e:
        raise type(e)(f"{source}: {e}" if source else str(e)) from None
    return SearchSpace(**kwargs, source=source)


def _parse(data: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"top level must be a mapping of {', '.join(TOP_LEVEL_KEYS)}")
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise unknown_name("key", key, TOP_LEVEL_KEYS, "the top level")
    for key in _REQUIRED_TOP_LEVEL:
        if data.get(key) is None:
            raise ConfigError(f"{key}: missing; required keys: {', '.join(_REQUIRED_TOP_LEVEL)}")
    parameters = _parse_parameters(data["parameters"])
    return {
        "name": data["name"],
        "description": data.get("description") or "",
        "base": _mapping(data.get("base"), "base"),
        "parameters": parameters,
        "objectives": _parse_objectives(data["objectives"]),
        "early_stopping": None if data.get("early_stopping") is None
        else _build(EarlyStopping, data["early_stopping"], "early_stopping"),
        "initial_points": _parse_points(data.get("initial_points"), {p.name: p for p in parameters}),
        "budget": _build(Budget, data.get("budget") or {}, "budget"),
    }


def _mapping(raw: Any, where: str) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    return copy.deepcopy(dict(raw))


def _build(cls: type, raw: Any, where: str) -> Any:
    """``from_dict`` that also reports missing required keys as a ConfigError."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(f"{where}: missing key {missing[0]!r}; required keys: {', '.join(required)}")
    return from_dict(cls, raw, where=where)


def _parse_objectives(raw: Any) -> tuple[Objective, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError("objectives must be a non-empty list, e.g. - {metric: forget_quality, direction: maximize}")
    return tuple(_build(Objective, item, f"objectives[{i}]") for i, item in enumerate(raw))


def _parse_parameters(raw: Any) -> tuple[Param, ...]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError("parameters must be a non-empty mapping of dotted run-config keys, "
                          "e.g. method.beta1: {distribution: uniform, low: 0.5, high: 8.0}")
    keys = run_config_keys()
    return tuple(_parse_param(str(name), spec, keys) for name, spec in raw.items())


def _parse_param(name: str, raw: Any, keys: Mapping[str, Any]) -> Param:
    where = f"parameters.{name}"
    _check_run_config_key(name, keys, "parameters")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, e.g. {{distribution: uniform, low: 0.1, high: 1.0}}")
    dist = raw.get("distribution")
    if dist not in DISTRIBUTIONS:
        what = "missing" if dist is None else f"{dist!r} is not valid"
        hint = close_matches(str(dist), DISTRIBUTIONS) if dist is not None else []
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(f"{where}.distribution: {what}{extra}; valid: {', '.join(DISTRIBUTIONS)}")
    allowed = ("distribution", *_KEYS[dist], "when")
    for key in raw:
        if key not in allowed:
            raise ConfigError(f"{where}.{key} does not apply to distribution {dist!r}; keys that apply: "
                              f"{', '.join(allowed)}")
    for key in _REQUIRED[dist]:
        if key not in raw:
            raise ConfigError(f"{where}: distribution {dist!r} needs {key!r}")
    _check_kind(name, dist, keys[name])
    integer = dist == "int"
    return Param(
        name=name, distribution=dist,
        low=_number(raw.get("low"), f"{where}.low", integer), high=_number(raw.get("high"), f"{where}.high", integer),
        step=_number(raw.get("step"), f"{where}.step", True), choices=_choices(raw.get("choices"), where),
        value=raw.get("value"), when=_parse_when(raw.get("when"), where),
    )


def _check_kind(name: str, dist: str, tp: Any) -> None:
    """Numeric distributions only for numeric fields; floats only for float fields."""
    kind = _numeric_kind(tp)
    if dist in ("categorical", "fixed") or kind == "float" or (kind == "int" and dist == "int"):
        return
    valid = "int, categorical, fixed" if kind == "int" else "categorical, fixed"
    what = "an integer" if kind == "int" else "not a number"
    raise ConfigError(f"parameters.{name}.distribution: {dist!r} does not suit {name}, which is {what}; "
                      f"valid: {valid}")


def _number(raw: Any, where: str, integer: bool) -> float | int | None:
    if raw is None:
        return None
    if isinstance(raw, str):  # YAML 1.1 reads "1e-4" as a string
        try:
            raw = float(raw)
        except ValueError:
            raise ConfigError(f"{where}={raw!r} must be a number") from None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ConfigError(f"{where}={raw!r} must be a finite number")
    if integer:
        if not float(raw).is_integer():
            raise ConfigError(f"{where}={raw!r} must be an integer")
        return int(raw)
    return float(raw)


def _choices(raw: Any, where: str) -> tuple[Any, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError(f"{where}.choices must be a list, e.g. [a, b], got {raw!r}")
    return tuple(raw)


def _parse_when(raw: Any, where: str) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}.when must be a mapping like {{method.weighting: [satimp, simimp]}}")
    out: dict[str, tuple[Any, ...]] = {}
    for key, values in raw.items():
        vals = tuple(values) if isinstance(values, list) else (values,)
        if not vals:
            raise ConfigError(f"{where}.when.{key}: empty list; list the values that enable {where[11:]}")
        out[str(key)] = vals
    return out


def _parse_points(raw: Any, params: Mapping[str, Param]) -> tuple[dict[str, Any], ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("initial_points must be a list of mappings, e.g. - {method.beta1: 5.0}")
    return tuple(_parse_point(point, params, f"initial_points[{i}]") for i, point in enumerate(raw))


def _parse_point(raw: Any, params: Mapping[str, Param], where: str) -> dict[str, Any]:
    """Copy a point, reading numbers written as strings (``1e-3``) for numeric parameters."""
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where} must be a non-empty mapping of parameter values, e.g. {{method.beta1: 5.0}}")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        p = params.get(key)
        if p is not None and p.distribution in ("uniform", "loguniform", "int") and value is not None:
            with contextlib.suppress(ConfigError):
                value = _number(value, f"{where}.{key}", p.distribution == "int")
        out[str(key)] = value
    return out


def _apply_space_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Dotted overrides; under ``parameters`` the (dotted) parameter names are matched first."""
    out = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        if path[0] == "parameters" and len(path) > 1:
            out["parameters"] = _override_parameter(dict(out.get("parameters") or {}), path[1:], value, text)
        else:
            out = apply_overrides(out, [text])
    return out


def _override_parameter(params: dict[str, Any], path: list[str], value: Any, text: str) -> dict[str, Any]:
    for i in range(len(path), 0, -1):
        name = ".".join(path[:i])
        if name not in params:
            continue
        rest = path[i:]
        if not rest:
            if value is None:  # parameters.<name>=null removes the parameter
                del params[name]
            else:
                params[name] = value
            return params
        spec = copy.deepcopy(params[name]) if isinstance(params[name], dict) else {}
        if rest[0] == "when" and len(rest) > 1:
            spec["when"] = {**(spec.get("when") or {}), ".".join(rest[1:]): value}
        elif len(rest) == 1:
            spec[rest[0]] = value
        else:
            raise ConfigError(f"override {text!r}: {'.'.join(rest)!r} is not a key of parameter {name}")
        params[name] = spec
        return params
    if isinstance(value, Mapping):
        params[".".join(path)] = value  # a new parameter
        return params
    raise ConfigError(f"override {text!r}: no parameter {'.'.join(path[:-1])!r}; parameters: {', '.join(params)}"
                      "; a new one takes a mapping, e.g. parameters.optim.lr={distribution: fixed, value: 0.001}")


# ------------------------------------------------------------------ validation


def _validate(space: SearchSpace) -> None:
    """Every check across fields, then the dry run; errors name the field."""
    if not isinstance(space.name, str) or not _NAME_RE.match(space.name):
        raise ConfigError(f"name={space.name!r} is not valid; valid: letters, digits, - and _")
    if not isinstance(space.base, dict):
        raise ConfigError(f"base must be a mapping (a partial run config), got {space.base!r}")
    try:
        run_config_from_dict(copy.deepcopy(space.base))
    except ConfigError as e:
        raise type(e)(f"base: {e}") from None
    _check_parameters(space.parameters)
    _check_objectives(space)
    _check_points(space)
    _dry_run(space)
    if space.early_stopping is not None:
        _check_early_stopping(space)


def _check_parameters(params: tuple[Param, ...]) -> None:
    if not params:
        raise ConfigError("parameters: at least one parameter is needed")
    keys = run_config_keys()
    seen: dict[str, Param] = {}
    for p in params:
        _check_run_config_key(p.name, keys, "parameters")
        if p.name in seen:
            raise ConfigError(f"parameters.{p.name} is declared twice")
        for key, values in p.when.items():
            _check_condition(p, key, values, seen, [q.name for q in params])
        seen[p.name] = p


def _check_condition(p: Param, key: str, values: tuple[Any, ...], earlier: Mapping[str, Param],
                     all_names: list[str]) -> None:
    where = f"parameters.{p.name}.when"
    if key not in earlier:
        if key in all_names:
            raise ConfigError(f"{where}: {key!r} is declared later (or is the parameter itself); conditions "
                              f"refer to earlier parameters: move {key} above {p.name}")
        hint = close_matches(key, earlier)
        extra = f" (did you mean {', '.join(map(repr, hint))}?)" if hint else ""
        valid = ", ".join(earlier) or f"none ({p.name} is the first parameter)"
        raise ConfigError(f"{where}: {key!r} is not a parameter declared before {p.name}{extra}; conditions "
                          f"test earlier parameters; valid: {valid}")
    q = earlier[key]
    if q.distribution not in ("categorical", "fixed"):
        raise ConfigError(f"{where}.{key}: conditions test categorical or fixed parameters; {key} is "
                          f"{q.distribution}")
    for v in values:
        if not q.contains(v):
            raise ConfigError(f"{where}.{key}: {v!r} is not a value of {key}; valid: {q.describe()}")


def _check_objectives(space: SearchSpace) -> None:
    if not space.objectives:
        raise ConfigError("objectives: at least one objective is needed")
    if "data.benchmark" in space.param_map:
        raise ConfigError("data.benchmark is a parameter: every trial of a sweep must report the same metrics; "
                          "valid: set data.benchmark in base, one sweep per benchmark")
    table = space.base_config.benchmark.metrics
    seen: set[str] = set()
    for i, o in enumerate(space.objectives):
        if o.metric in seen:
            raise ConfigError(f"objectives[{i}]: metric {o.metric!r} is listed twice")
        seen.add(o.metric)
        natural = table.optuna_direction(o.metric, f"objectives[{i}] of benchmark {space.base_config.data.benchmark!r}")
        if o.direction != natural:
            raise ConfigError(f"objectives[{i}]: direction={o.direction!r} does not suit {o.metric!r}; valid: {natural}")
        _check_produced(space, o.metric, f"objectives[{i}].metric")


def _check_produced(space: SearchSpace, metric: str, where: str) -> None:
    """Metrics that need generation exist only when generation is on in every trial."""
    if not space.base_config.benchmark.metrics.get(metric).needs_generation:
        return
    rouge = space.param_map.get("eval.rouge")
    if not space.base_config.eval.rouge:
        raise ConfigError(f"{where}={metric!r}: runs do not produce it with base eval.rouge: false; "
                          "valid: eval.rouge: true, or a metric without ROUGE")
    if rouge is not None and (rouge.distribution != "fixed" or rouge.value is not True):
        raise ConfigError(f"{where}={metric!r}: some trials would not produce it (eval.rouge is a parameter); "
                          "valid: keep eval.rouge out of the parameters")


def _check_early_stopping(space: SearchSpace) -> None:
    es = space.early_stopping
    if not space.base_config.epoch_eval or "epoch_eval" in space.param_map:
        raise ConfigError("early_stopping needs base epoch_eval: true (a metric after every epoch), "
                          "and epoch_eval out of the parameters")
    table = space.base_config.benchmark.metrics
    natural = table.tune_mode(es.metric, f"early_stopping of benchmark {space.base_config.data.benchmark!r}")
    if es.mode != natural:
        raise ConfigError(f"early_stopping: mode={es.mode!r} does not suit {es.metric!r}; valid: {natural}")
    _check_produced(space, es.metric, "early_stopping.metric")
    if es.grace_period >= space.max_epochs:
        raise ConfigError(f"early_stopping.grace_period={es.grace_period} leaves nothing to stop: trials run "
                          f"at most {space.max_epochs} epochs; valid: < {space.max_epochs}")


def _check_points(space: SearchSpace) -> None:
    params = space.param_map
    for i, point in enumerate(space.initial_points):
        for key, value in point.items():
            _check_point_value(params, key, value, f"initial_points[{i}]")
        _check_point_conditions(space.parameters, point, f"initial_points[{i}]")
    n = len(space.initial_points)
    if space.budget.num_samples < n:
        raise ConfigError(f"budget.num_samples={space.budget.num_samples} < {n} initial_points: the last ones "
                          f"would never run; valid: num_samples >= {n}")


def _check_point_value(params: Mapping[str, Param], key: str, value: Any, where: str) -> None:
    p = params.get(key)
    if p is None:
        raise unknown_name("parameter", key, params, where)
    if p.distribution == "fixed":
        raise ConfigError(f"{where}.{key}: {key} is fixed ({p.value!r}); initial points set sampled parameters")
    if not p.contains(value):
        raise ConfigError(f"{where}.{key}={value!r} is outside the parameter; valid: {p.describe()}")


def _check_point_conditions(params: tuple[Param, ...], point: Mapping[str, Any], where: str) -> None:
    """Each key of the point must apply given the point's (and fixed) values."""
    unknown = object()  # a value the sampler will choose
    values: dict[str, Any] = {}
    for p in params:
        status = _applies_to_point(p, values, unknown)
        if p.name in point and status is not True:
            cond = ", ".join(f"{k} in {list(v)}" for k, v in p.when.items())
            why = ("the point does not set every parameter it names: set them too" if status is None
                   else "it does not hold for this point")
            raise ConfigError(f"{where}.{p.name}: applies only when {cond}; {why}")
        if status is True:
            values[p.name] = point.get(p.name, p.value if p.distribution == "fixed" else unknown)


def _applies_to_point(p: Param, values: Mapping[str, Any], unknown: object) -> bool | None:
    """True / False, or None when a condition names a parameter the sampler will choose."""
    result: bool | None = True
    for name, allowed in p.when.items():
        v = values.get(name)
        if v is unknown:
            result = None
        elif name not in values or v not in allowed:
            return False
    return result


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
    data = copy.deepcopy(space.base)
    if "method" not in data:  # as in run_config_from_dict: no method section means the default one
        data["method"] = {k: v for k, v in to_dict(RunConfig().method).items() if v is not None}
    for key, value in params.items():
        _check_run_config_key(key, keys, "trial parameters")
        _set_dotted(data, key, value)
    if "seed" not in params:
        data["seed"] = seed
    return run_config_from_dict(data)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    *sections, leaf = key.split(".")
    node = data
    for part in sections:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[leaf] = value


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
