"""The retain model's per-question forget truth ratios, which forget quality needs: read from
open-unlearning's ``TOFU_EVAL.json`` or this project's ``retain_stats.json``, written, and checked."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from unlearn.errors import ConfigError

REFERENCE_KEY = _OWN_KEY = "forget_truth_ratios"
_OU_KEY = "forget_truth_ratio"
_EXPECTED = (f'{{"{_OWN_KEY}": [numbers]}} or open-unlearning\'s TOFU_EVAL.json with '
             f'{{"{_OU_KEY}": {{"value_by_index": {{"0": {{"score": number}}, ...}}}}}}')


def _numbers(values: Sequence[Any], path: Path, where: str) -> list[float]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{path}: {where}[{i}]={v!r} is not a number; expected {_EXPECTED}")
        out.append(float(v))
    if not out:
        raise ConfigError(f"{path}: {where} is empty; expected one truth ratio per forget question")
    return out


def _from_open_unlearning(block: Any, path: Path) -> list[float]:
    by_index = block.get("value_by_index") if isinstance(block, Mapping) else None
    if not isinstance(by_index, Mapping):
        raise ConfigError(f"{path}: {_OU_KEY!r} has no 'value_by_index' mapping; expected {_EXPECTED}")
    try:
        keys = sorted(by_index, key=int)
    except ValueError:
        raise ConfigError(
            f"{path}: {_OU_KEY}.value_by_index keys must be integers, got {sorted(by_index)[:5]}"
        ) from None
    scores = []
    for k in keys:
        entry = by_index[k]
        if not isinstance(entry, Mapping) or "score" not in entry:
            raise ConfigError(
                f"{path}: {_OU_KEY}.value_by_index[{k!r}]={entry!r} lacks 'score'; expected {_EXPECTED}"
            )
        scores.append(entry["score"])
    return _numbers(scores, path, f"{_OU_KEY}.value_by_index")


def retain_stats_from_file(path: str | Path) -> list[float]:
    """Read the retain model's per-question forget truth ratios, in forget-set order.

    Accepts open-unlearning's ``TOFU_EVAL.json`` (``forget_truth_ratio.value_by_index``, ordered by
    integer index) or this project's ``{"forget_truth_ratios": [...]}``.

    Raises:
        ConfigError: naming the path and the expected layout, if the file is missing or malformed.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"retain statistics file {str(path)!r} not found; expected {_EXPECTED}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(
            f"{path}: cannot read retain statistics as JSON ({e}); expected {_EXPECTED}"
        ) from None
    if isinstance(data, Mapping) and _OWN_KEY in data:
        values = data[_OWN_KEY]
        if not isinstance(values, list):
            raise ConfigError(f"{path}: {_OWN_KEY!r} must be a list, got {type(values).__name__}")
        return _numbers(values, path, _OWN_KEY)
    if isinstance(data, Mapping) and _OU_KEY in data:
        return _from_open_unlearning(data[_OU_KEY], path)
    found = sorted(data)[:8] if isinstance(data, Mapping) else type(data).__name__
    raise ConfigError(f"{path}: no retain statistics found (got {found}); expected {_EXPECTED}")


def save_retain_stats(path: str | Path, values: Sequence[float]) -> None:
    """Write ``values`` (a retain model's raw forget truth ratios) as ``{"forget_truth_ratios": [...]}``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({_OWN_KEY: [float(v) for v in values]}, indent=1) + "\n")


def check_retain_stats(values: Sequence[float], n_forget: int) -> None:
    """Raise ConfigError unless there is exactly one retain truth ratio per forget question."""
    if len(values) != n_forget:
        raise ConfigError(
            f"retain statistics hold {len(values)} truth ratios but the forget split has {n_forget} "
            "questions; use the retain model's statistics computed on this same forget split"
        )
