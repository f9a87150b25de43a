"""Reading a run's ``results.json`` (written by rank 0), with a clear error when it is damaged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeps.layout import read_json
from unlearn.errors import ConfigError
from unlearn.train.run import RESULTS_FILE


def load_results(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / RESULTS_FILE
    if not path.is_file():
        raise ConfigError(f"{path} not found: the run did not finish (or {run_dir} is not a run directory)")
    doc = read_json(path, "run results")
    for key in ("config", "final", "epochs"):
        if key not in doc:
            raise ConfigError(f"{path} lacks {key!r}; it was not written by this version")
    return doc


def finished_results(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's results if it already finished (a complete, readable results.json), else None: not run
    yet, interrupted (resumable), or its results damaged (to run again)."""
    if not (Path(run_dir) / RESULTS_FILE).is_file():
        return None
    try:
        return load_results(run_dir)
    except ConfigError:
        return None
