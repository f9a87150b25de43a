"""User-facing errors. Every message names the bad value and what would be valid."""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable


class UnlearnError(Exception):
    """Base class of every error this package raises for bad user input."""


class ConfigError(UnlearnError, ValueError):
    """A configuration value, key or file is invalid."""


class NonFiniteScoresError(ConfigError):
    """Scores computed from a model are not finite: a bad model file, or (after unlearning) a diverged run."""


class UnknownNameError(ConfigError, KeyError):
    """A name (method, metric, benchmark, key...) is not among the valid ones."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


def close_matches(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """Return up to ``n`` entries of ``valid`` that look like ``name``."""
    return difflib.get_close_matches(name, list(valid), n=n, cutoff=0.5)


def unknown_name(kind: str, name: object, valid: Iterable[str], where: str = "") -> UnknownNameError:
    """Build an error for an unknown ``name`` of ``kind``, listing valid names and close matches."""
    valid = sorted(valid)
    hint = close_matches(str(name), valid)
    msg = f"unknown {kind} {name!r}{' in ' + where if where else ''}; valid: {', '.join(valid)}"
    if hint:
        msg += f" (did you mean {', '.join(repr(h) for h in hint)}?)"
    return UnknownNameError(msg)


def check_range(name: str, value: float, *, low: float | None = None, high: float | None = None,
                low_inclusive: bool = True, high_inclusive: bool = True) -> None:
    """Raise ConfigError naming ``name`` and the valid range if ``value`` is outside it, or not finite
    (``optim.lr=inf`` would pass an open-ended range and diverge the run)."""
    lo = "-inf" if low is None else f"{low}"
    hi = "inf" if high is None else f"{high}"
    rng = f"{'[' if low_inclusive and low is not None else '('}{lo}, {hi}{']' if high_inclusive and high is not None else ')'}"
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not a finite number; valid: a finite number in {rng}")
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        raise ConfigError(f"{name}={value!r} is out of range; valid: {rng}")
