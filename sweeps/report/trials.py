"""The sweep's trial table, read from its directory without Ray (a damaged file is a DAMAGED row)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sweeps.layout import (
    CONSTRAINTS_FILE,
    RECORD_FILE,
    TRIAL_FILE,
    TRIALS_DIR,
    read_json,
    replicate_dir,
)
from sweeps.ledger import damaged_trial_advice
from sweeps.record import Bound, bound_from_dict
from unlearn.errors import ConfigError
from unlearn.train.run import MODEL_DIR, RESULTS_FILE


def collect_trials(root: Path) -> list[dict[str, Any]]:
    """One dict per trial: id, status, sampled params, metrics, the record, the run's config, reason.

    ``metrics`` are the trial's values of record (``record.json``: final metrics aggregated over its
    replicates) once it finished, its last reported metrics while it runs. ``config`` and ``run_dir`` are
    those of replicate 0 (the one ``export-best`` exports); ``seeds`` every replicate's seed.
    A damaged file does not hide the others: its trial is listed with status DAMAGED and the file named.
    """
    trials = []
    for d in sorted((root / TRIALS_DIR).glob("*")) if (root / TRIALS_DIR).is_dir() else []:
        row: dict[str, Any] = {"trial_id": d.name, "status": "PENDING", "params": {}, "metrics": {}, "reason": None,
                               "config": None, "dir": str(d), "run_dir": str(d), "record": None, "feasible": None,
                               "intervals": {}, "seeds": []}
        try:
            _read_trial(d, row)
        except ConfigError as e:
            row.update(status="DAMAGED", reason=str(e))
        trials.append(row)
    return trials


def _read_trial(d: Path, row: dict[str, Any]) -> None:
    advice = damaged_trial_advice(d)
    if (d / TRIAL_FILE).is_file():
        doc = read_json(d / TRIAL_FILE, f"record of trial {d.name}", advice)
        row.update(status=doc.get("status", "RUNNING"), params=doc.get("params", {}),
                   metrics=doc.get("last_metrics", {}), reason=doc.get("reason"))
    record = read_json(d / RECORD_FILE, f"values of record of trial {d.name}", advice) if (d / RECORD_FILE).is_file() else None
    run = replicate_dir(d, 0, len(record["replicates"])) if record else d
    if (run / RESULTS_FILE).is_file():
        res = read_json(run / RESULTS_FILE, f"results of trial {d.name}", advice)
        row.update(metrics=res["final"], config=res["config"], has_model=(run / MODEL_DIR).is_dir(), run_dir=str(run),
                   seeds=[res["config"].get("seed")])
    if record is not None:
        row.update(metrics=record["metrics"], record=record, feasible=record["feasible"],
                   intervals=record.get("intervals", {}), seeds=[r["seed"] for r in record["replicates"]])


def load_bounds(root: Path) -> tuple[Bound, ...]:
    """The sweep's constraints as resolved at launch (``constraints.json``; none for a sweep without)."""
    path = root / CONSTRAINTS_FILE
    if not path.is_file():
        return ()
    doc = json.loads(path.read_text())
    return tuple(bound_from_dict(d) for d in doc)
