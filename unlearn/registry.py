"""The one registry used for methods, weightings, objectives, metrics and benchmarks.

Example:
    WEIGHTINGS = Registry("weighting")

    @WEIGHTINGS.register("satimp", params=SatImpParams)
    def satimp_weights(ce, params): ...
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from unlearn.errors import ConfigError, unknown_name

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered object with an optional frozen dataclass of its hyper-parameters."""

    name: str
    obj: T
    params: type | None = None
    doc: str = ""


class Registry(Generic[T]):
    """A name -> object map whose lookups fail with the list of valid names."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, params: type | None = None, doc: str = "") -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``; registering a name twice is an error."""

        def deco(obj: T) -> T:
            if name in self._entries:
                raise ConfigError(f"{self.kind} {name!r} is registered twice")
            text = doc or (getattr(obj, "__doc__", None) or "").strip().splitlines()[0:1]
            self._entries[name] = Entry(name, obj, params, text if isinstance(text, str) else "".join(text))
            return obj

        return deco

    def entry(self, name: str) -> Entry[T]:
        """Return the entry registered as ``name`` or raise UnknownNameError listing the valid ones."""
        try:
            return self._entries[name]
        except KeyError:
            raise unknown_name(self.kind, name, self._entries) from None

    def get(self, name: str) -> T:
        return self.entry(name).obj

    def build_params(self, name: str, values: dict[str, Any]) -> Any:
        """Instantiate the params dataclass of ``name`` from ``values`` (unknown keys rejected)."""
        from unlearn.config import from_dict

        cls = self.entry(name).params
        if cls is None:
            if values:
                raise ConfigError(f"{self.kind} {name!r} takes no parameters; got {sorted(values)}")
            return None
        return from_dict(cls, values, where=f"{self.kind} {name!r}")

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Entry[T]]:
        return iter(self._entries.values())
