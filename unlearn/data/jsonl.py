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
