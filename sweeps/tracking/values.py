"""Params, tags, metrics: pure helpers that make a run config and its results fit MLflow's rules."""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import math
import numbers
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sweeps.tracking.names import (
    _ANSI,
    _KEY_CHARS,
    PARAM_VALUE_LIMIT,
    REASON_LIMIT,
    SECRET_MARKERS,
    TAG_VALUE_LIMIT,
)
from unlearn.errors import ConfigError


# --------------------------------------------------------------------------------------------------
# Params, tags, metrics: pure helpers
# --------------------------------------------------------------------------------------------------
def flatten(d: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``{"a.b": v}``; lists and other values stay as they are."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, sep, name))
        else:
            out[name] = value
    return out


def is_secret(name: str) -> bool:
    """True if a param/tag name looks like a credential (contains TOKEN, KEY, SECRET or PASSWORD)."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def split_secrets(d: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return ``(d without secret-looking names, sorted dropped names)``."""
    kept = {k: v for k, v in d.items() if not is_secret(k)}
    return kept, sorted(set(d) - set(kept))


def mlflow_key(name: str) -> str:
    """A name MLflow accepts for a param/metric/tag: invalid characters become ``_``."""
    key = _KEY_CHARS.sub("_", str(name))
    key = "/".join(p for p in key.split("/") if p not in ("", ".", ".."))
    return key[:250] or "_"


def stringify_params(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Flatten to dotted keys and stringify; return ``(loggable params, full values of truncated ones)``."""
    out: dict[str, str] = {}
    full: dict[str, str] = {}
    for key, value in flatten(params).items():
        text = json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)
        name = mlflow_key(key)
        if len(text) > PARAM_VALUE_LIMIT:
            full[name] = text
            text = text[: PARAM_VALUE_LIMIT - 3] + "..."
        out[name] = text
    return out, full


def _tag_value(value: Any, limit: int = TAG_VALUE_LIMIT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_finite(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Split metrics into ``(finite floats, {key: repr} of non-finite ones)``; non-numerics are dropped."""
    finite: dict[str, float] = {}
    bad: dict[str, str] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        value = float(value)
        if math.isfinite(value):
            finite[mlflow_key(key)] = value
        else:
            bad[mlflow_key(key)] = str(value)
    return finite, bad


def failure_reason(text: str, head_lines: int = 15) -> str:
    """A short failure reason from an error trace: its last line (the exception) then its first lines."""
    text = _ANSI.sub("", text)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip(" ^~\t")]
    if not lines:
        return "unknown error"
    reason = "\n".join([lines[-1], "---", *lines[:head_lines]]) if len(lines) > 1 else lines[0]
    return _tag_value(reason, REASON_LIMIT)


def _code_tags() -> dict[str, str]:
    """The package version and, when the package lives in a git checkout, its commit."""
    tags = {"unlearn.version": _package_version()}
    repo = Path(__file__).resolve().parents[1]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        tags["mlflow.source.git.commit"] = tags["unlearn.git_commit"] = out.stdout.strip()
    return tags


def _package_version() -> str:
    try:
        return importlib.metadata.version("unlearn-sweeps")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_id(kind: str, value: str) -> str:
    # ids end up inside MLflow filter strings, which have no escaping for quotes
    if not value or any(c in value for c in "'\"`\\\n"):
        raise ConfigError(f"{kind} {value!r} is invalid: it must be non-empty, without quotes or backslashes")
    return value


def _check_status(status: str) -> None:
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ConfigError(f"run status {status!r} is invalid; valid: FINISHED, FAILED, KILLED")


def _now_ms() -> int:
    return int(time.time() * 1000)


