"""``key=value`` overrides on a search-space YAML (``budget.num_samples=4``, ``parameters.optim.lr.high=0.02``)."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from unlearn.config import apply_overrides, parse_override
from unlearn.errors import ConfigError


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


