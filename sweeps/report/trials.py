"""The sweep's trial table, read from its directory without Ray (a damaged file is a DAMAGED row)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sweeps.layout import (
    CONSTRAINTS_FILE,
    RECORD_FILE,
    TRIAL_FILE,
    TRIALS_DIR,
    read_json,
    replicate_dir,
)
from sweeps.ledger import damaged_trial_advice
from sweeps.record import Bound, TrialRecord, bound_from_dict
from unlearn.errors import ConfigError
from unlearn.train.run import MODEL_DIR, RESULTS_FILE

T = TypeVar("T")


@dataclass(frozen=True)
class TrialRow:
    """One trial as its directory holds it (``collect_trials`` builds it).

    ``metrics`` are the trial's values of record (``record.json``: final metrics aggregated over its
    replicates) once it finished, its last reported metrics while it runs. ``config`` (the resolved run
    config as plain data), ``run_dir`` and ``has_model`` are those of replicate 0 (the one ``export-best``
    exports); ``seeds`` every replicate's seed. A DAMAGED trial names the damaged file in ``reason``.
    """

    trial_id: str
    status: str
    dir: Path
    run_dir: Path
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    reason: str | None = None
    config: dict[str, Any] | None = None
    record: TrialRecord | None = None
    seeds: tuple[int, ...] = ()
    has_model: bool = False

    @property
    def feasible(self) -> bool | None:
        """The record's feasibility; None without a record (the trial is judged on its metrics then)."""
        return self.record.feasible if self.record is not None else None

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        """The record's 95 % intervals of the watched metrics (none without a record)."""
        return self.record.intervals if self.record is not None else {}


def collect_trials(root: Path) -> list[TrialRow]:
    """One row per trial directory, by id. A damaged file does not hide the others: its trial is listed
    with status DAMAGED and the file named."""
    dirs = sorted((root / TRIALS_DIR).glob("*")) if (root / TRIALS_DIR).is_dir() else []
    return [_read_trial(d) for d in dirs]


def _read_trial(d: Path) -> TrialRow:
    """The row of trial directory ``d``: its ledger entry, then replicate 0's results, then its record,
    each later one superseding what the one before said of the metrics."""
    status, params, metrics, reason = "PENDING", {}, {}, None
    config, record, run_dir, seeds, has_model = None, None, d, (), False
    try:
        advice = damaged_trial_advice(d)
        if (d / TRIAL_FILE).is_file():
            doc = read_json(d / TRIAL_FILE, f"record of trial {d.name}", advice)
            status, params = doc.get("status", "RUNNING"), doc.get("params", {})
            metrics, reason = doc.get("last_metrics", {}), doc.get("reason")
        read = _read(d / RECORD_FILE, f"values of record of trial {d.name}", advice, TrialRecord.from_dict)
        run = replicate_dir(d, 0, len(read.replicates)) if read else d
        results = _read(run / RESULTS_FILE, f"results of trial {d.name}", advice, _final_and_config)
        if results is not None:
            (metrics, config), run_dir, has_model = results, run, (run / MODEL_DIR).is_dir()
            seeds = (config.get("seed"),)
        if read is not None:  # only once every file read: a DAMAGED row holds no record
            record, metrics, seeds = read, read.metrics, tuple(r["seed"] for r in read.replicates)
    except ConfigError as e:
        status, reason = "DAMAGED", str(e)
    return TrialRow(d.name, status, d, run_dir, params, metrics, reason, config, record, seeds, has_model)


def _final_and_config(doc: dict[str, Any]) -> tuple[dict[str, float], dict[str, Any]]:
    """A run's ``results.json``: its final metrics and its resolved config."""
    if not isinstance(doc["config"], dict):
        raise TypeError(f"'config' holds a {type(doc['config']).__name__}, not an object")
    return doc["final"], doc["config"]


def _read(path: Path, what: str, advice: str, parse: Callable[[dict[str, Any]], T]) -> T | None:
    """``parse`` of the JSON object in ``path`` (None: no such file); a file of the wrong shape is damaged
    like an unreadable one."""
    if not path.is_file():
        return None
    doc = read_json(path, what, advice)
    try:
        return parse(doc)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path} ({what}) is damaged: {type(e).__name__}: {e}; {advice}") from e


def load_bounds(root: Path) -> tuple[Bound, ...]:
    """The sweep's constraints as resolved at launch (``constraints.json``; none for a sweep without)."""
    path = root / CONSTRAINTS_FILE
    if not path.is_file():
        return ()
    doc = json.loads(path.read_text())
    return tuple(bound_from_dict(d) for d in doc)
