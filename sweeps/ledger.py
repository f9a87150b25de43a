"""The sweep's own record of its trials, written by the driver: ``DIR/trials/<trial_id>/trial.json``.

It is what ``report`` and ``export-best`` read (no Ray needed), next to each trial's ``results.json``
(written by the trial's rank-0 worker).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweeps.layout import TRIAL_FILE, trial_dir, write_json_atomic
from sweeps.record import (
    ReportedRecord,
    replicate_of_result,
)


def damaged_trial_advice(trial: Path) -> str:
    """What works for a trial whose record or results are damaged: it counts as DAMAGED (never as best;
    a resume does not re-run it), and its resolved config runs it again."""
    rerun = (f"run it again with `unlearn-sweep run {trial / 'config.json'} --out NEW_DIR`"
             if (trial / "config.json").is_file() else "its sampled parameters are in the sweep's MLflow run")
    return f"the trial counts as DAMAGED (never as best; a resume does not re-run it); {rerun}"


class LedgerCallback(Callback):
    """Driver-side Tune callback keeping ``trial.json`` (params, status, last metrics, the values of record,
    failure reason)."""

    def __init__(self, sweep_dir: Path, max_steps: int) -> None:
        self.sweep_dir = Path(sweep_dir)
        self.max_steps = max_steps

    def _update(self, trial: Any, **fields: Any) -> None:
        path = trial_dir(self.sweep_dir, trial.trial_id) / TRIAL_FILE
        doc = json.loads(path.read_text()) if path.is_file() else {"trial_id": trial.trial_id, "starts": 0}
        doc.update(fields, updated=time.time())
        write_json_atomic(path, doc)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        path = trial_dir(self.sweep_dir, trial.trial_id) / TRIAL_FILE
        doc = json.loads(path.read_text()) if path.is_file() else {}
        if doc.get("status") == "FINISHED":
            return  # resumed after a driver crash: the trial only replays its recorded results
        starts = doc.get("starts", 0)
        first = {} if starts else {"started": time.time()}
        self._update(trial, params=dict(trial.config), status="RUNNING", starts=starts + 1, reason=None, **first)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if (replicate := replicate_of_result(result)) is not None:
            self._update(trial, replicates_done=replicate[0] + 1)
            return
        if (record := ReportedRecord.of(result)) is not None:  # its values of record (in full: record.json)
            self._update(trial, record=record.values, feasible=record.feasible)
            return
        metrics = {k: v for k, v in result.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._update(trial, last_metrics=metrics, epoch=result.get("epoch"), stopped=bool(result.get("done")))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        path = trial_dir(self.sweep_dir, trial.trial_id) / TRIAL_FILE
        doc = json.loads(path.read_text()) if path.is_file() else {}
        if doc.get("status") == "FINISHED" and doc.get("ended"):
            return  # already recorded (a replay after a driver crash)
        early = doc.get("stopped") and (doc.get("epoch") or 0) < self.max_steps
        self._update(trial, status="KILLED" if early else "FINISHED", ended=time.time(),
                     reason="stopped early by the scheduler (ASHA)" if early else None)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        from sweeps.tracking import failure_reason, trial_error_text

        self._update(trial, status="FAILED", ended=time.time(), reason=failure_reason(trial_error_text(trial)))
