"""Reading a run's ``results.json`` (written by rank 0) and a trial's ``record.json`` (written by its
process), with a clear error when one is damaged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeps.layout import RECORD_FILE, read_json
from sweeps.record import TrialRecord
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


def load_record(trial: Path) -> TrialRecord | None:
    """The trial's record if it finished (``record.json``), else None."""
    path = trial / RECORD_FILE
    return TrialRecord.from_dict(read_json(path, "the trial's record")) if path.is_file() else None


def trial_per_item(trial: Path) -> dict[str, Any] | None:
    """A finished trial's per-question statistics, read from its replicates' ``results.json``:
    ``{"replicates": [{"index", "seed", "per_item"}, ...]}`` in the record's replicate order (``per_item``:
    the benchmark's ``EvalOutput.per_item`` of the run's final or kept epoch). None when the trial has no record.

    Raises:
        ConfigError: the record or a replicate's results are missing or damaged.
    """
    if (record := load_record(trial)) is None:
        return None
    return {"replicates": [{"index": r["index"], "seed": r["seed"],
                            "per_item": load_results(r["dir"]).get("per_item", {})} for r in record.replicates]}
