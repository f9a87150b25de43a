"""Cross-field checks of a search space, run once it is built (``validate_space``; the dry run last)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sweeps.space.dryrun import _dry_run
from sweeps.space.keys import _check_run_config_key, run_config_keys
from unlearn.errors import ConfigError, close_matches, unknown_name

if TYPE_CHECKING:
    from sweeps.space.schema import Param, SearchSpace


_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")

# ------------------------------------------------------------------ validation


def validate_space(space: SearchSpace) -> SearchSpace:
    """Every check across fields, then the dry run; errors name the file (``space.source``) and the field.

    Returns ``space``, valid.
    """
    try:
        _validate(space)
    except ConfigError as e:
        raise type(e)(f"{space.source}: {e}" if space.source else str(e)) from None
    return space


def _validate(space: SearchSpace) -> None:
    if not isinstance(space.name, str) or not _NAME_RE.match(space.name):
        raise ConfigError(f"name={space.name!r} is not valid; valid: letters, digits, - and _")
    if not isinstance(space.base, dict):
        raise ConfigError(f"base must be a mapping (a partial run config), got {space.base!r}")
    try:
        space.base_config
    except ConfigError as e:
        raise type(e)(f"base: {e}") from None
    _check_parameters(space.parameters)
    _check_objectives(space)
    _check_points(space)
    _check_constraints(space)
    _check_replicates(space)
    _check_adaptive(space)
    _check_confirm(space)
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
    attacked = [k for k in space.param_map if k.split(".")[:2] in (["eval", "quant"], ["eval", "relearn"])]
    if attacked:
        raise ConfigError(f"{attacked[0]} is a parameter: every trial of a sweep is attacked the same way (the same "
                          "attack metrics, the same relearning split); valid: set eval.quant / eval.relearn in base")
    table = space.base_config.metrics
    seen: set[str] = set()
    for i, o in enumerate(space.objectives):
        if o.metric in seen:
            raise ConfigError(f"objectives[{i}]: metric {o.metric!r} is listed twice")
        seen.add(o.metric)
        natural = table.optuna_direction(o.metric, f"objectives[{i}] of benchmark {space.base_config.data.benchmark!r}")
        if o.direction != natural:
            raise ConfigError(f"objectives[{i}]: direction={o.direction!r} does not suit {o.metric!r}; valid: {natural}")
        _check_produced(space, o.metric, f"objectives[{i}].metric")


def _check_constraints(space: SearchSpace) -> None:
    table = space.base_config.metrics
    bench = space.base_config.data.benchmark
    seen: set[tuple[str, str]] = set()
    for i, c in enumerate(space.constraints):
        where = f"constraints[{i}]"
        table.get(c.metric, f"{where}.metric of benchmark {bench!r}")
        _check_produced(space, c.metric, f"{where}.metric")
        if (c.metric, c.key) in seen:
            raise ConfigError(f"{where}: {c.key} on {c.metric!r} is given twice; valid: one bound per metric and kind")
        seen.add((c.metric, c.key))
        if c.relative and c.metric not in space.base_config.benchmark.metrics.names:
            raise ConfigError(f"{where}: {c.key} on {c.metric!r}, an attack's metric: the prepared target is not "
                              "attacked, so it has no value to take a fraction of; valid: an absolute min / max")
        if c.relative and not space.base_config.prepare.finetune:
            raise ConfigError(f"{where}: {c.key} needs the prepared target model's {c.metric}, which prepare measures "
                              "only when it fine-tunes the target (base prepare.finetune: false here); valid: an "
                              "absolute min / max")


def _check_replicates(space: SearchSpace) -> None:
    r = space.budget.replicates
    if r == 1:
        return
    if space.early_stopping is not None:
        raise ConfigError(f"budget.replicates={r} with early_stopping: ASHA decides on the epochs of one run, and a "
                          "trial's replicates run one after another; valid: replicates: 1, or no early_stopping")
    if "seed" in space.param_map:
        raise ConfigError(f"budget.replicates={r} with seed among the parameters: each replicate's seed is derived "
                          "from the sweep seed, the point and the replicate index; valid: remove the seed parameter")


def _check_adaptive(space: SearchSpace) -> None:
    b = space.budget
    if not b.adaptive:
        return
    if b.replicates < 3:
        raise ConfigError(f"budget.adaptive with replicates={b.replicates}: a point is judged after 2 replicates, so "
                          "adaptive replication needs room for more; valid: replicates >= 3, or adaptive: false")
    if space.is_multi_objective:
        raise ConfigError("budget.adaptive with several objectives: the incumbent is the best on one metric; valid: "
                          "one objective, or adaptive: false")


def _check_confirm(space: SearchSpace) -> None:
    confirm = space.budget.confirm
    if confirm is None:
        return
    if space.is_multi_objective:
        raise ConfigError(f"budget.confirm with {len(space.objectives)} objectives: the confirmation stage races the "
                          "points on one metric; valid: one objective (constraints keep the others in bounds), or "
                          "confirm: null")
    if "seed" in space.param_map:
        raise ConfigError("budget.confirm with seed among the parameters: the stage runs every confirmed point on "
                          "the same fresh seeds; valid: remove the seed parameter")


def _check_produced(space: SearchSpace, metric: str, where: str) -> None:
    """Metrics that need generation exist only when generation is on in every trial."""
    if not space.base_config.metrics.get(metric).needs_generation:
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
    table = space.base_config.metrics
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


