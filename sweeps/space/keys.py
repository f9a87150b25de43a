"""Run-config keys a space may name: every dotted leaf of RunConfig with its type."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, get_args, get_origin, get_type_hints

from unlearn.config import CustomConfig
from unlearn.errors import ConfigError, close_matches
from unlearn.train.config import RunConfig

# ------------------------------------------------------------------ run-config keys


@functools.cache
def run_config_keys() -> Mapping[str, Any]:
    """Every dotted leaf key of RunConfig with its type hint, e.g. ``{"optim.lr": float, "seed": int}``; ``data``
    lists every registered benchmark's options (``data.max_articles``)."""
    return MappingProxyType(_leaves(RunConfig, ""))


def _leaves(cls: type, prefix: str) -> dict[str, Any]:
    hints = get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and issubclass(tp, CustomConfig):
            out.update({f"{prefix}{f.name}.{k}": t for k, t in tp.config_keys().items()})
        elif dataclasses.is_dataclass(tp):
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


