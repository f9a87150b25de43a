"""Reading a search-space YAML into a validated SearchSpace (the schema is in ``sweeps.space.schema``)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sweeps.layout import SPACE_FILE
from sweeps.space.checks import validate_space
from sweeps.space.keys import _check_run_config_key, _numeric_kind, run_config_keys
from sweeps.space.overrides import _apply_space_overrides
from sweeps.space.schema import (
    _KEYS,
    _REQUIRED,
    DISTRIBUTIONS,
    Budget,
    Constraint,
    EarlyStopping,
    Objective,
    Param,
    SearchSpace,
)
from unlearn.benchmarks.options import absolute_path, option_keys
from unlearn.config import from_dict, load_yaml
from unlearn.errors import ConfigError, close_matches, unknown_name

TOP_LEVEL_KEYS: tuple[str, ...] = (
    "name", "description", "base", "parameters", "objectives", "early_stopping", "initial_points", "constraints",
    "budget",
)
_REQUIRED_TOP_LEVEL = ("name", "parameters", "objectives")

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"
"""The search spaces shipped with the project."""

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
    data = _with_base_file(load_yaml(path), path)
    try:
        data = _apply_space_overrides(data, overrides)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return space_from_dict(_absolute_data_paths(data), source=str(path))


def _with_base_file(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``base`` given as a run-config YAML file (relative to the space's directory) replaced by its content:
    a setup written once, which ``unlearn-sweep run FILE`` runs as it is and the space sweeps around."""
    base = data.get("base")
    if not isinstance(base, str):
        return data
    file = (path.parent / base).resolve()
    if not file.is_file():
        raise ConfigError(f"{path}: base {base!r} is not a file ({file}); valid: a mapping of run-config keys, or a "
                          "run-config YAML file relative to the space's directory")
    return {**data, "base": load_yaml(file)}


LEGACY_SEEDS = "per_point"  # what a sweep written before budget.seeds existed ran


def load_sweep_space(root: str | Path) -> SearchSpace:
    """A sweep directory's space (``DIR/space.yaml``, written at launch with every budget key). One written
    before ``budget.seeds`` existed ran per-point seeds: it keeps them, so that its resume runs the same."""
    path = Path(root) / SPACE_FILE
    data = load_yaml(path)
    if isinstance(data, dict) and isinstance(data.get("budget"), dict) and "seeds" not in data["budget"]:
        data["budget"]["seeds"] = LEGACY_SEEDS
    return space_from_dict(data, source=str(path))


def _absolute_data_paths(data: Any) -> Any:
    """``base.data.path`` and the benchmarks' path options (``importance_path``...) made absolute (from the
    current directory) here, in the driver: each trial's process runs in its own working directory, where a
    relative path means nothing."""
    section = data.get("base", {}).get("data") if isinstance(data, Mapping) and isinstance(data.get("base"), Mapping) else None
    if not isinstance(section, dict):
        return data
    for key in ("path", *(k for k, o in option_keys().items() if o.path)):
        if isinstance(section.get(key), str):
            section[key] = absolute_path(section[key])
    return data


def space_from_dict(data: Mapping[str, Any], *, source: str = "") -> SearchSpace:
    """Build a validated SearchSpace from the YAML schema's plain data; errors start with ``source``."""
    try:
        kwargs = _parse(data)
    except ConfigError as e:
        raise type(e)(f"{source}: {e}" if source else str(e)) from None
    return validate_space(SearchSpace(**kwargs, source=source))


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
        "constraints": _parse_constraints(data.get("constraints")),
        "budget": _build(Budget, data.get("budget") or {}, "budget"),
    }


def _parse_constraints(raw: Any) -> tuple[Constraint, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ConfigError("constraints must be a list, e.g. - {metric: model_utility, min_fraction_of_target: 0.95}")
    out = []
    for i, item in enumerate(raw):
        try:
            out.append(_build(Constraint, item, f"constraints[{i}]"))
        except ConfigError as e:  # from_dict's errors name the key already; the bound checks do not
            if f"constraints[{i}]" in str(e):
                raise
            raise type(e)(f"constraints[{i}]: {e}") from None
    return tuple(out)


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


