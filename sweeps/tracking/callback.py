"""The Ray Tune callback that feeds a SweepTracker from the driver."""

from __future__ import annotations

import contextlib
import logging
import numbers
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ray.tune import Callback

from sweeps.layout import trial_dir
from sweeps.record import (
    ReportedRecord,
    replicate_of_result,
)
from sweeps.tracking.names import PER_ITEM_ARTIFACT, TAG_FEASIBLE
from sweeps.tracking.tracker import SweepTracker
from sweeps.tracking.values import failure_reason, flatten
from unlearn.errors import ConfigError

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------------
# Ray Tune callback
# --------------------------------------------------------------------------------------------------
_TUNE_KEYS = frozenset({
    "done", "training_iteration", "trial_id", "timestamp", "pid", "hostname", "node_ip", "date",
    "config", "experiment_id", "experiment_tag", "iterations_since_restore", "checkpoint_dir_name",
    "should_checkpoint", "episodes_total", "timesteps_total", "timesteps_since_restore", "warmup_time",
    "epoch", "__duplicate__", "__trial_info__",
})


def params_of(trial: Any) -> dict[str, Any]:
    """A trial's resolved config, flattened to dotted keys."""
    return flatten(trial.config or {})


def trial_id_of(trial: Any) -> str:
    """The id a trial's MLflow run is found by: Tune's ``trial.trial_id``."""
    return str(trial.trial_id)


def result_metrics(result: Mapping[str, Any]) -> dict[str, Any]:
    """Numeric metrics of a Tune result, without Tune's bookkeeping (``time_*``, ``pid``, ``done``...).

    Nested dicts are flattened with ``/`` (``{"train": {"loss": x}}`` -> ``train/loss``).
    """
    kept = {k: v for k, v in result.items() if k not in _TUNE_KEYS and not k.startswith("time_")}
    return {k: v for k, v in flatten(kept, sep="/").items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool)}


def result_step(result: Mapping[str, Any]) -> int:
    """The step of a result: its ``epoch`` if reported, else Tune's ``training_iteration``."""
    epoch = result.get("epoch")
    if isinstance(epoch, numbers.Real) and not isinstance(epoch, bool):
        return int(epoch)
    return int(result.get("training_iteration", 0))


def trial_error_text(trial: Any) -> str:
    """The trial's error trace from its ``error.txt`` (empty if Tune wrote none)."""
    with contextlib.suppress(AttributeError, RuntimeError, OSError, TypeError):
        path = trial.error_file
        if path and Path(path).is_file():
            return Path(path).read_text(encoding="utf-8", errors="replace")
    with contextlib.suppress(AttributeError, RuntimeError, OSError, TypeError):
        error = trial.get_pickled_error() or trial.get_error()
        if error is not None:
            return f"{type(error).__name__}: {error}"
    return ""


class MLflowTrialCallback(Callback):
    """Ray Tune callback (driver side) that records every trial as a child run of the sweep's parent.

    A trial's per-epoch results become its child run's metric history; its record (``sweeps.record``)
    its final metrics under ``record/<metric>`` keys and the tag ``unlearn.feasible``; each finished
    replicate (``budget.replicates`` > 1) a run nested in the child, with its seed and final metrics. A
    finished trial's per-question statistics (each replicate's ``results.json`` ``per_item``, with its index
    and seed) become the child's artifact ``per_item.json``: any statistic can be recomputed offline.

    Status rule on completion: Tune stopping a trial on one of its results (scheduler such as ASHA, or
    a stopper) marks that result ``done``. Such a trial is ``KILLED`` when ``max_steps`` is given and
    the stop came before step ``max_steps``; otherwise (the trainable returned, or reached
    ``max_steps``, or ``max_steps`` is None) it is ``FINISHED``. Errors are ``FAILED`` with the
    reason. Tracking problems during the sweep are logged, never raised: they must not end a long
    sweep (a tracker without :meth:`SweepTracker.start_parent` fails at ``setup``).

    The store is written from one background thread, in the order of the callbacks: a trial waits for
    Tune's driver to take each of its reports, and a store write (~13 ms on sqlite per epoch, more to a
    remote server) must not hold it. A trial's end (complete, error) and ``on_experiment_end`` wait for
    every write before them (:meth:`wait`), so that a trial Tune records as ended is ended in MLflow too.

    Args:
        tracker: a tracker whose :meth:`SweepTracker.start_parent` was called.
        max_steps: the step (epoch) count of a full trial, to tell early-stopped trials apart.
        params_of: trial -> flat params to log.
        trial_id_of: trial -> the id its MLflow run is found by.
        sweep_dir: the sweep directory whose ``trials/<id>/`` hold the trials' records and runs; None: the
            tracker's.
    """

    def __init__(self, tracker: SweepTracker, max_steps: int | None = None,
                 params_of: Callable[[Any], dict[str, Any]] = params_of,
                 trial_id_of: Callable[[Any], str] = trial_id_of, sweep_dir: Path | None = None) -> None:
        self.tracker = tracker
        self.max_steps = max_steps
        self.params_of = params_of
        self.trial_id_of = trial_id_of
        self.sweep_dir = Path(sweep_dir) if sweep_dir is not None else tracker.sweep_dir
        self._started: set[str] = set()
        self._stopped_at: dict[str, int] = {}
        self._records: dict[str, dict[str, float]] = {}
        self._writer: ThreadPoolExecutor | None = None
        self._last_write: Future | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles callbacks; the writer thread starts anew
        return {**self.__dict__, "_writer": None, "_last_write": None}

    def _submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the writer thread (one: after everything submitted before it)."""
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-trial-writer")
        self._last_write = self._writer.submit(self._safely, fn, *args)

    def wait(self) -> None:
        """Return once every submitted store write has run (or been buffered)."""
        if self._last_write is not None:
            self._last_write.result()

    def setup(self, **info: Any) -> None:
        if self.tracker.sweep_id is None:
            raise ConfigError("MLflowTrialCallback: call tracker.start_parent(...) before the sweep starts")

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tid = self.trial_id_of(trial)
        self._started.add(tid)
        self._stopped_at.pop(tid, None)
        self._submit(self.tracker.trial_run, tid, self.params_of(trial))

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        tid, step = self.trial_id_of(trial), result_step(result)
        if (replicate := replicate_of_result(result)) is not None:
            self._submit(self.tracker.replicate_run, tid, *replicate)
            return
        if (record := ReportedRecord.of(result)) is not None:
            # the trial's values of record: logged as its final metrics (``record/<metric>``), at its end
            self._records[tid] = result_metrics(record.entries)
            self._submit(self.tracker.tag_trial, tid, {TAG_FEASIBLE: "true" if record.feasible else "false"})
            return
        self._submit(self.tracker.log_metrics, tid, result_metrics(result), step)
        if result.get("done"):
            self._stopped_at[tid] = step  # Tune decided the stop on this result

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tid = self.trial_id_of(trial)
        if tid not in self._started:  # a pending trial removed at the end: it never ran
            return
        stopped = self._stopped_at.get(tid)
        if stopped is not None and self.max_steps is not None and stopped < self.max_steps:
            reason = f"stopped early by Tune (scheduler or stopper) at step {stopped} of {self.max_steps}"
            self._submit(self.tracker.finish_trial, tid, "KILLED", reason)
        else:
            self._submit(self._log_per_item, tid)
            self._submit(self.tracker.finish_trial, tid, "FINISHED", None, self._records.pop(tid, None))
        self.wait()  # a trial's end is on record before Tune goes on (and may checkpoint the experiment)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = failure_reason(trial_error_text(trial))
        self._submit(self.tracker.tag_trial, self.trial_id_of(trial), {"unlearn.recovered_error": reason})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        reason = failure_reason(trial_error_text(trial))
        self._submit(self.tracker.finish_trial, self.trial_id_of(trial), "FAILED", reason)
        self.wait()

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._submit(self.tracker.flush)
        self.wait()

    def _log_per_item(self, tid: str) -> None:
        """The finished trial's per-question statistics as its run's artifact (read on the writer thread:
        one results.json per replicate); a trial without a record (stopped early) has none."""
        from sweeps.results import trial_per_item  # the run layer (torch): only once a trial ends

        try:
            doc = trial_per_item(trial_dir(self.sweep_dir, tid))
        except ConfigError as e:
            logger.warning("per-question statistics of trial %s not logged to MLflow: %s", tid, e)
            return
        if doc is not None:
            self.tracker.log_trial_dict(tid, {"trial_id": tid, **doc}, PER_ITEM_ARTIFACT)

    @staticmethod
    def _safely(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("MLflow tracking failed in %s; the sweep goes on", getattr(fn, "__name__", fn))


