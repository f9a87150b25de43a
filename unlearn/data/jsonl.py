"""JSON Lines files of local benchmark copies: one object per line, blank lines skipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from unlearn.errors import ConfigError


def read_jsonl(file: Path, expected: str) -> list[Any]:
    """The parsed lines of ``file``; a line that is not JSON raises ConfigError naming the file, the line and
    ``expected`` (what each line should hold)."""
    rows = []
    for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{file} line {n} is not JSON ({e.msg}); expected {expected}") from e
    return rows


def explain_unreadable(file: Path, expected: str) -> ConfigError | None:
    """What is wrong with ``file``, for a reader (``datasets``) whose own error does not say: it is empty,
    not UTF-8, or its first line that is not JSON (named by number); None when it is none of these."""
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        return ConfigError(f"{file} is not UTF-8 text (byte {e.start}); expected {expected}")
    if not text.strip():
        return ConfigError(f"{file} is empty; expected {expected}")
    try:
        json.loads(text)
        return None  # one JSON document (an array of rows): valid, so the reader failed for another reason
    except json.JSONDecodeError:
        pass
    try:
        read_jsonl(file, expected)
    except ConfigError as e:
        return e
    return None
