"""Typed, frozen configs: YAML/dicts are converted at the boundary only, unknown keys rejected.

``from_dict(cls, data)`` builds a (nested) frozen dataclass, checking every key and coercing scalar
types; ranges are each dataclass's own ``__post_init__`` business. ``apply_overrides`` applies
Hydra-style dotted ``key=value`` strings to a plain dict before conversion. A ``CustomConfig`` (e.g.
``DataConfig``, whose flat keys go to its benchmark's options) converts itself, and ``from_dict`` /
``to_dict`` defer to it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Self, TypeVar, get_args, get_origin, get_type_hints

import yaml

from unlearn.errors import ConfigError, close_matches

C = TypeVar("C")


class CustomConfig(ABC):
    """A config dataclass whose plain-data form is not its fields one to one."""

    @classmethod
    @abstractmethod
    def config_from_dict(cls, data: Mapping[str, Any], where: str) -> Self:
        """Build from plain data (``where``: its dotted place, for messages), as ``from_dict`` would."""

    @abstractmethod
    def config_to_dict(self) -> dict[str, Any]:
        """The plain data ``config_from_dict`` reads back."""

    @classmethod
    @abstractmethod
    def config_keys(cls) -> dict[str, Any]:
        """Each key of the plain data with its type hint (what a search space may name)."""


def _where(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise ConfigError(f"{where} must not be empty (null)")
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}={value!r}: " + "; ".join(errors))
    if origin is typing.Literal:
        options = get_args(tp)
        if value not in options:
            hint = close_matches(str(value), [str(o) for o in options])
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ConfigError(f"{where}={value!r} is not valid; valid: {', '.join(map(str, options))}{extra}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin in (tuple, list):
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        args = get_args(tp)
        item = args[0] if args else Any
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if isinstance(value, str):
                try:
                    return float(value)  # YAML 1.1 reads "1e-5" as a string
                except ValueError:
                    pass
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    return value


def from_dict(cls: type[C], data: Mapping[str, Any] | None, *, where: str = "") -> C:
    """Build the frozen dataclass ``cls`` from ``data``, rejecting unknown keys by name."""
    data = dict(data or {})
    if isinstance(cls, type) and issubclass(cls, CustomConfig):
        return cls.config_from_dict(data, where)
    check_keys(data, [f.name for f in dataclasses.fields(cls) if f.init], where)
    return build(cls, coerce_fields(cls, data, where), where)


def check_keys(data: Mapping[str, Any], valid: Iterable[str], where: str) -> None:
    """Raise ConfigError naming the first key of ``data`` not in ``valid``, with close matches."""
    valid = list(valid)
    unknown = [k for k in data if k not in valid]
    if unknown:
        k = unknown[0]
        hint = close_matches(str(k), valid)
        extra = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ConfigError(
            f"unknown key {_where(where, str(k))!r}{extra}; valid keys{' of ' + where if where else ''}: "
            f"{', '.join(valid)}"
        )


def coerce_fields(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    """``data``'s values (keys: fields of the dataclass ``cls``) coerced to the fields' types."""
    hints = get_type_hints(cls)
    return {k: _coerce(hints[k], v, _where(where, k)) for k, v in data.items()}


def build(cls: type[C], kwargs: Mapping[str, Any], where: str) -> C:
    """``cls(**kwargs)``; a ConfigError of its checks is prefixed with ``where``."""
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise type(e)(f"{where}: {e}" if where else str(e)) from None


def to_dict(cfg: Any) -> Any:
    """Plain-data form of a (nested) dataclass, tuples as lists: safe for YAML/JSON."""
    if isinstance(cfg, CustomConfig):
        return cfg.config_to_dict()
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    return cfg


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value`` into (["a","b","c"], parsed value); the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key.path=value")
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; expected key.path=value")
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({e})") from None
    return key.split("."), value


Override = tuple[list[str], Any]
"""A parsed override: the key's parts and its value (``parse_override``)."""


def apply_overrides(data: dict[str, Any], overrides: Iterable[str | Override]) -> dict[str, Any]:
    """Return a copy of ``data`` with dotted overrides applied (keys are checked later, by from_dict).

    Each override is a ``key.path=value`` string or an already parsed ``(parts, value)`` pair.
    """
    out = _deepcopy(data)
    for item in overrides:
        path, value = parse_override(item) if isinstance(item, str) else item
        node = out
        for part in path[:-1]:
            nxt = node.get(part)
            if nxt is None:
                nxt = node[part] = {}
            if not isinstance(nxt, dict):
                text = item if isinstance(item, str) else ".".join(path)
                raise ConfigError(f"override {text!r}: {part!r} is a value, not a section")
            node = nxt
        node[path[-1]] = value
    return out


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping safely; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data
