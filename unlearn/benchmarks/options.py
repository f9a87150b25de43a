"""A benchmark's own ``data`` options, and the flat ``data.<option>`` keys of every registered benchmark.

Each plug-in declares a frozen ``BenchmarkOptions`` subclass (``Benchmark.options_type``) whose
``__post_init__`` checks its values. Users write its fields flat in ``data`` (``data.max_articles=8``);
``DataConfig`` routes them here. The union over the registry (``option_keys``) is what a recorded config
lists and what a search space may name: an option of another benchmark is recorded at its default, so
that a config's plain form (and the prepare cache key hashed from it) has one shape whatever the benchmark.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_type_hints

from unlearn.config import check_keys, from_dict, to_dict
from unlearn.errors import ConfigError

if TYPE_CHECKING:
    from unlearn.benchmarks.base import Benchmark

# Field metadata of a local path option: made absolute at load (a trial's process runs in another directory).
PATH: Mapping[str, Any] = {"path": True}


def absolute_path(value: str) -> str:
    """A local path as the config keeps it: ``~`` expanded, absolute from the current directory. The one rule
    for ``data.path``, the path options, and a search space's ``base`` (made absolute in the driver)."""
    return str(Path(value).expanduser().resolve())


@dataclass(frozen=True)
class BenchmarkOptions:
    """A benchmark's options (none here). Subclasses add defaulted fields and call ``super().__post_init__()``."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.metadata.get("path") and value is not None:
                object.__setattr__(self, f.name, absolute_path(value))


@dataclass(frozen=True)
class OptionKey:
    """A flat ``data.<name>`` key: its type and recorded default (its first owner's) and the benchmarks owning it."""

    type: Any
    default: Any
    owners: tuple[str, ...]
    path: bool


def option_keys() -> dict[str, OptionKey]:
    """Every option of every registered benchmark, in registry then field order."""
    from unlearn.benchmarks import BENCHMARKS  # the registry imports the plug-ins, which import this

    out: dict[str, OptionKey] = {}
    for entry in BENCHMARKS:
        tp = entry.obj.options_type
        hints = get_type_hints(tp)
        for f in dataclasses.fields(tp):
            if f.name in out:
                out[f.name] = dataclasses.replace(out[f.name], owners=(*out[f.name].owners, entry.name))
            else:
                out[f.name] = OptionKey(hints[f.name], _default(tp, f), (entry.name,), bool(f.metadata.get("path")))
    return out


def _default(tp: type, f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"option {f.name!r} of {tp.__name__} has no default; every benchmark option needs one")


def options_from_flat(bench: Benchmark, data: Mapping[str, Any], common: list[str], where: str) -> BenchmarkOptions:
    """``bench``'s options from the flat ``data`` keys (``common``: the other valid keys, for messages). An
    option of another benchmark passes at its recorded default (a recorded config lists them all)."""
    own = [f.name for f in dataclasses.fields(bench.options_type)]
    keys = option_keys()
    mine: dict[str, Any] = {}
    for key, value in data.items():
        if key in own:
            mine[key] = value
        elif key in keys and _same(value, keys[key].default):
            continue
        elif key in keys:
            owners = " and ".join(repr(o) for o in keys[key].owners)
            plural = "s" if len(keys[key].owners) > 1 else ""
            raise ConfigError(f"data.{key}={value!r} does not apply to {bench.title}: it is an option of benchmark"
                              f"{plural} {owners}; valid options of {bench.name!r}: {', '.join(own) or 'none'}")
        else:
            check_keys({key: value}, [*common, *own], where)
    return from_dict(bench.options_type, mine, where=where)


def flat_options(options: BenchmarkOptions) -> dict[str, Any]:
    """Every registered option key: ``options``' own values, the other benchmarks' options at their defaults."""
    own = to_dict(options)
    return {k: own[k] if k in own else key.default for k, key in option_keys().items()}


def _same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)
