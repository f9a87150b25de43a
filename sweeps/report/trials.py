"""The sweep's trial table, read from its directory without Ray (a damaged file is a DAMAGED row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sweeps.layout import TRIAL_FILE, TRIALS_DIR, read_json
from sweeps.ledger import damaged_trial_advice
from unlearn.errors import ConfigError
from unlearn.train.run import MODEL_DIR, RESULTS_FILE


def collect_trials(root: Path) -> list[dict[str, Any]]:
    """One dict per trial: id, status, sampled params, metrics (final if the run finished), reason.

    A damaged file does not hide the others: its trial is listed with status DAMAGED and the file named.
    """
    trials = []
    for d in sorted((root / TRIALS_DIR).glob("*")) if (root / TRIALS_DIR).is_dir() else []:
        row: dict[str, Any] = {"trial_id": d.name, "status": "PENDING", "params": {}, "metrics": {}, "reason": None,
                               "config": None, "dir": str(d)}
        try:
            if (d / TRIAL_FILE).is_file():
                doc = read_json(d / TRIAL_FILE, f"record of trial {d.name}", damaged_trial_advice(d))
                row.update(status=doc.get("status", "RUNNING"), params=doc.get("params", {}),
                           metrics=doc.get("last_metrics", {}), reason=doc.get("reason"))
            if (d / RESULTS_FILE).is_file():
                res = read_json(d / RESULTS_FILE, f"results of trial {d.name}", damaged_trial_advice(d))
                row.update(metrics=res["final"], config=res["config"], has_model=(d / MODEL_DIR).is_dir())
        except ConfigError as e:
            row.update(status="DAMAGED", reason=str(e))
        trials.append(row)
    return trials


