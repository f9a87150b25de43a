"""The sweep's MLflow writer: one parent run per sweep and one nested child run per trial."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException

from sweeps.envvars import scoped_env
from sweeps.tracking.buffer import OpBuffer, is_unreachable
from sweeps.tracking.names import (
    _HTTP_ENV,
    ARTIFACT_DIR,
    BUFFER_FILE,
    EXPERIMENT_TAGS,
    FLUSH_RETRY_INTERVAL_S,
    REASON_LIMIT,
    REJECTED_FILE,
    TAG_DROPPED,
    TAG_FAILURE,
    TAG_NONFINITE,
    TAG_PARAM_CONFLICTS,
    TAG_PARENT,
    TAG_PREVIOUS_FAILURE,
    TAG_REPLICATE,
    TAG_RESTARTS,
    TAG_RESUMES,
    TAG_ROLE,
    TAG_RUN_NAME,
    TAG_SWEEP_ID,
    TAG_TRIAL_ID,
    TAG_TRUNCATED,
    RunStatus,
)
from sweeps.tracking.values import (
    _check_id,
    _check_status,
    _code_tags,
    _now_ms,
    _tag_value,
    flatten,
    mlflow_key,
    split_finite,
    split_secrets,
    stringify_params,
)
from unlearn.errors import ConfigError

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# The tracker
# --------------------------------------------------------------------------------------------------
class SweepTracker:
    """One MLflow parent run per sweep and one nested child run per trial, written by the driver.

    Picklable (Ray Tune pickles its callbacks into ``tuner.pkl``): the client is rebuilt on demand.
    Public methods return a run id, or ``None`` when the operation was buffered because the store is
    unreachable.

    Args:
        tracking_uri: ``sqlite:////abs/mlflow.db`` or ``http(s)://host:port`` (see :func:`check_tracking_uri`).
        experiment_name: created if missing. With a sqlite store its artifacts go to
            ``<sweep_dir>/mlartifacts``; a server keeps its own artifact root.
        sweep_dir: where the buffer file lives (and the sqlite artifacts).

    Raises:
        ConfigError: the store cannot be reached when the tracker is created.
    """

    def __init__(self, tracking_uri: str, experiment_name: str, sweep_dir: Path) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.sweep_dir = Path(sweep_dir).resolve()
        self.buffer = OpBuffer(self.sweep_dir / BUFFER_FILE)
        self.sweep_id: str | None = None
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._parent_id: str | None = None
        self._runs: dict[str, str] = {}  # trial id -> child run id
        self._last_step: dict[str, int] = {}
        self._next_flush_at = 0.0
        try:
            with scoped_env(_HTTP_ENV, keep_set=True):
                self.experiment_id()
        except MlflowException as e:
            if not is_unreachable(e):
                raise
            raise ConfigError(f"MLflow store {tracking_uri!r} is unreachable: {e}") from None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_client"] = None
        state["_next_flush_at"] = 0.0  # a monotonic time means nothing in another process
        return state

    @property
    def client(self) -> MlflowClient:
        """The explicit client of this tracker's store (no global MLflow state)."""
        if self._client is None:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
        return self._client

    @property
    def parent_run_id(self) -> str | None:
        """The sweep's parent run id, once known."""
        return self._parent_id

    def experiment_id(self) -> str:
        """The experiment's id, creating (or restoring a deleted) experiment on first use."""
        if self._experiment_id is None:
            self._experiment_id = self._get_or_create_experiment()
        return self._experiment_id

    def _get_or_create_experiment(self) -> str:
        exp = self.client.get_experiment_by_name(self.experiment_name)
        if exp is None:
            location = None
            if self.tracking_uri.startswith("sqlite:"):
                location = (self.sweep_dir / ARTIFACT_DIR).as_uri()
            try:
                return self.client.create_experiment(self.experiment_name, artifact_location=location,
                                                     tags=EXPERIMENT_TAGS)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":  # else created meanwhile by someone else
                    raise
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise
        for key, value in EXPERIMENT_TAGS.items():
            if exp.tags.get(key) is None:  # created by an earlier version, or by someone else
                self.client.set_experiment_tag(exp.experiment_id, key, value)
        if exp.lifecycle_stage == "deleted":
            logger.warning("MLflow experiment %r was deleted; restoring it", self.experiment_name)
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    # ---- the public API: each call becomes one (bufferable) operation ----------------------------
    def start_parent(self, sweep_id: str, params: Mapping[str, Any], tags: Mapping[str, Any],
                     run_name: str | None = None) -> str | None:
        """Create, or on resume reuse (set back to RUNNING), the one parent run of sweep ``sweep_id``.

        Args:
            sweep_id: stable id of the sweep (tag ``unlearn.sweep_id``).
            params: search-space settings, nested or dotted; flattened and stringified.
            tags: extra tags (code version tags are added).
            run_name: shown in the UI (``mlflow.runName``); defaults to ``sweep_id``.
        """
        self.sweep_id = _check_id("sweep id", sweep_id)
        flat, dropped = split_secrets(flatten(params))
        user_tags, dropped_tags = split_secrets({str(k): _tag_value(v) for k, v in tags.items()})
        return self._call("start_parent", sweep_id=sweep_id, params=flat, tags={**_code_tags(), **user_tags},
                          run_name=run_name or sweep_id, dropped=dropped + dropped_tags)

    def trial_run(self, trial_id: str, params: Mapping[str, Any]) -> str | None:
        """Create the trial's child run, or reuse it (tag ``unlearn.restarts`` + 1) if it exists."""
        _check_id("trial id", trial_id)
        flat, dropped = split_secrets(flatten(params))
        return self._call("trial_run", trial_id=trial_id, params=flat, dropped=dropped)

    def log_metrics(self, trial_id: str, metrics: Mapping[str, Any], step: int) -> str | None:
        """Log one step (epoch) of a trial's metrics; non-finite values become tags, non-numerics are dropped."""
        _check_id("trial id", trial_id)
        finite, nonfinite = split_finite(metrics)
        self._last_step[trial_id] = max(step, self._last_step.get(trial_id, step))
        if not finite and not nonfinite:
            return None
        return self._call("log_metrics", trial_id=trial_id, metrics=finite, nonfinite=nonfinite,
                          step=int(step), timestamp_ms=_now_ms())

    def tag_trial(self, trial_id: str, tags: Mapping[str, Any]) -> str | None:
        """Set tags on a trial's run (secret-looking names are dropped)."""
        _check_id("trial id", trial_id)
        kept, _ = split_secrets({str(k): v for k, v in tags.items()})
        return self._call("tag_trial", trial_id=trial_id, tags={k: _tag_value(v) for k, v in kept.items()})

    def finish_trial(self, trial_id: str, status: RunStatus, reason: str | None = None,
                     final_metrics: Mapping[str, Any] | None = None) -> str | None:
        """End a trial's run with ``status``; ``reason`` goes to tag ``unlearn.failure_reason``.

        Final metrics are logged at the trial's last logged step (0 if none), so that MLflow's
        "latest value" of a key that was also logged per epoch is the final one.
        """
        _check_id("trial id", trial_id)
        _check_status(status)
        finite, nonfinite = split_finite(final_metrics or {})
        return self._call("finish_trial", trial_id=trial_id, status=status,
                          reason=None if reason is None else _tag_value(reason, REASON_LIMIT),
                          metrics=finite, nonfinite=nonfinite, step=self._last_step.get(trial_id, 0),
                          timestamp_ms=_now_ms())

    def replicate_run(self, trial_id: str, index: int, seed: int, metrics: Mapping[str, Any]) -> str | None:
        """A finished replicate of a trial: a run nested in the trial's child run, with its seed and final
        metrics (found again by tags: a replay updates it)."""
        _check_id("trial id", trial_id)
        finite, nonfinite = split_finite(metrics)
        return self._call("replicate_run", trial_id=trial_id, index=int(index), seed=int(seed), metrics=finite,
                          nonfinite=nonfinite, timestamp_ms=_now_ms())

    def finish_parent(self, status: RunStatus = "FINISHED") -> str | None:
        """End the parent run (after replaying whatever the buffer still holds)."""
        _check_status(status)
        return self._call("finish_parent", status=status, timestamp_ms=_now_ms())

    def log_parent_artifact(self, path: Path, artifact_path: str | None = None) -> str | None:
        """Log a local file to the parent run (the file must still exist if the op is buffered)."""
        return self._call("log_parent_artifact", path=str(Path(path).resolve()), artifact_path=artifact_path)

    def log_parent_dict(self, d: Mapping[str, Any], name: str) -> str | None:
        """Log a dict as JSON or YAML (by ``name``'s suffix) to the parent run."""
        data = json.loads(json.dumps(d, default=str))  # what is logged is what a replay would log
        return self._call("log_parent_dict", data=data, artifact_file=name)

    def trial_status(self, trial_id: str) -> str | None:
        """The status of a trial's MLflow run (``FINISHED``, ``RUNNING``...), None when it has none or the
        store does not answer."""
        try:
            run = self._find_run({TAG_ROLE: "trial", TAG_PARENT: self._parent(), TAG_TRIAL_ID: trial_id})
        except Exception:  # an outage: the caller treats the run as not finished (its writes are buffered)
            return None
        return run.info.status if run is not None else None

    def log_trial_dict(self, trial_id: str, d: Mapping[str, Any], name: str) -> str | None:
        """Log a dict as JSON or YAML (by ``name``'s suffix) to a trial's run. The dict itself is what a
        buffered op holds: an outage loses nothing, whatever happens to the files it was read from."""
        _check_id("trial id", trial_id)
        data = json.loads(json.dumps(d, default=str))  # what is logged is what a replay would log
        return self._call("log_trial_dict", trial_id=trial_id, data=data, artifact_file=name)

    # ---- buffering --------------------------------------------------------------------------------
    def _call(self, op: str, **kwargs: Any) -> Any:
        """Run ``op`` now, or append it to the buffer when the store is unreachable (or still has a backlog)."""
        if self.buffer.path.is_file() and (time.monotonic() < self._next_flush_at or not self._flush()):
            self._append(op, kwargs)
            return None
        try:
            with scoped_env(_HTTP_ENV, keep_set=True):
                return self._run_op(op, kwargs)
        except Exception as e:
            if not is_unreachable(e):
                raise
            logger.warning("MLflow store %s unreachable (%s); buffering %s in %s",
                           self.tracking_uri, str(e)[:200], op, self.buffer.path)
            self._append(op, kwargs)
            self._next_flush_at = time.monotonic() + FLUSH_RETRY_INTERVAL_S
            return None

    def _append(self, op: str, kwargs: dict[str, Any]) -> None:
        self.buffer.append({"op": op, "kwargs": kwargs, "experiment": self.experiment_name,
                            "sweep_id": self.sweep_id, "ts": _now_ms()})

    def flush(self) -> int:
        """Replay buffered operations in order; return how many left the buffer (replayed or rejected).

        Stops at the first one that finds the store still unreachable (the rest stay buffered).
        An operation the store rejects for another reason is moved to ``mlflow_buffer.rejected.jsonl``.
        """
        records = self.buffer.read()
        for i, record in enumerate(records):
            try:
                with scoped_env(_HTTP_ENV, keep_set=True):
                    self.sweep_id = self.sweep_id or record.get("sweep_id")
                    self._run_op(record["op"], record["kwargs"])
            except Exception as e:
                if is_unreachable(e):
                    self.buffer.replace(records[i:])
                    self._next_flush_at = time.monotonic() + FLUSH_RETRY_INTERVAL_S
                    return i
                logger.error("MLflow rejected buffered %s (%s); kept in %s", record["op"], e, REJECTED_FILE)
                OpBuffer(self.sweep_dir / REJECTED_FILE).append({**record, "error": str(e)})
        self.buffer.replace([])
        return len(records)

    def _flush(self) -> bool:
        self.flush()
        return not self.buffer.path.is_file()

    def _run_op(self, op: str, kwargs: dict[str, Any]) -> Any:
        handler: Callable[..., Any] | None = getattr(self, f"_op_{op}", None)
        if handler is None:
            raise ConfigError(f"unknown buffered MLflow operation {op!r}")
        return handler(**kwargs)

    # ---- run lookup ---------------------------------------------------------------------------------
    def _find_run(self, filters: dict[str, str]) -> Run | None:
        query = " AND ".join(f"tags.`{k}` = '{v}'" for k, v in filters.items())
        runs = self.client.search_runs([self.experiment_id()], filter_string=query, max_results=1,
                                       order_by=["attributes.start_time ASC"])
        return runs[0] if runs else None

    def _parent(self) -> str:
        if self._parent_id is None:
            if self.sweep_id is None:
                raise ConfigError("SweepTracker.start_parent(sweep_id, ...) must be called before trial runs")
            run = self._find_run({TAG_ROLE: "sweep", TAG_SWEEP_ID: self.sweep_id})
            if run is None:
                raise ConfigError(f"no MLflow parent run for sweep {self.sweep_id!r}; call start_parent first")
            self._parent_id = run.info.run_id
        return self._parent_id

    def _child(self, trial_id: str) -> str:
        """The trial's run id; created (without params) if the trial never started here."""
        if trial_id not in self._runs:
            run = self._find_run({TAG_ROLE: "trial", TAG_PARENT: self._parent(), TAG_TRIAL_ID: trial_id})
            if run is None:
                return self._op_trial_run(trial_id, {})
            self._runs[trial_id] = run.info.run_id
        return self._runs[trial_id]

    # ---- operations (the only code that writes to the store) -----------------------------------------
    def _op_start_parent(self, sweep_id: str, params: dict[str, Any], tags: dict[str, str],
                         run_name: str, dropped: list[str]) -> str:
        run = self._find_run({TAG_ROLE: "sweep", TAG_SWEEP_ID: sweep_id})
        base = {TAG_ROLE: "sweep", TAG_SWEEP_ID: sweep_id, TAG_RUN_NAME: run_name}
        if run is None:
            run_id = self.client.create_run(self.experiment_id(), run_name=run_name, tags=base).info.run_id
            resumes = 0
        else:
            run_id = run.info.run_id
            self.client.update_run(run_id, status="RUNNING")
            resumes = int(run.data.tags.get(TAG_RESUMES, "0")) + 1
            logger.info("resuming MLflow parent run %s of sweep %s", run_id, sweep_id)
        self._parent_id = run_id
        self._log_params_and_tags(run_id, params, {**tags, **base, TAG_RESUMES: str(resumes)}, dropped)
        return run_id

    def _op_trial_run(self, trial_id: str, params: dict[str, Any], dropped: list[str] | None = None) -> str:
        parent = self._parent()
        run = self._find_run({TAG_ROLE: "trial", TAG_PARENT: parent, TAG_TRIAL_ID: trial_id})
        if run is None:
            tags = {TAG_ROLE: "trial", TAG_PARENT: parent, TAG_TRIAL_ID: trial_id,
                    TAG_SWEEP_ID: self.sweep_id or "", TAG_RUN_NAME: trial_id}
            run_id = self.client.create_run(self.experiment_id(), run_name=trial_id, tags=tags).info.run_id
            restarts = 0
        else:
            run_id = run.info.run_id
            # no restarts tag = a creation interrupted before its end: finish it, it is no restart
            previous = run.data.tags.get(TAG_RESTARTS)
            restarts = 0 if previous is None else int(previous) + 1
            if run.info.status != "RUNNING":
                self.client.update_run(run_id, status="RUNNING")
            if TAG_FAILURE in run.data.tags:  # an earlier attempt's failure is no longer the run's
                self.client.set_tag(run_id, TAG_PREVIOUS_FAILURE, run.data.tags[TAG_FAILURE])
                self.client.delete_tag(run_id, TAG_FAILURE)
        self._runs[trial_id] = run_id
        self._log_params_and_tags(run_id, params, {}, dropped or [])
        self.client.set_tag(run_id, TAG_RESTARTS, str(restarts))  # last: marks the creation complete
        return run_id

    def _op_log_metrics(self, trial_id: str, metrics: dict[str, float], nonfinite: dict[str, str],
                        step: int, timestamp_ms: int) -> str:
        run_id = self._child(trial_id)
        entries = [Metric(k, v, timestamp_ms, step) for k, v in metrics.items()]
        tags = [RunTag(f"{TAG_NONFINITE}/{k}", f"{v} at step {step}") for k, v in nonfinite.items()]
        self.client.log_batch(run_id, metrics=entries, tags=tags)
        return run_id

    def _op_tag_trial(self, trial_id: str, tags: dict[str, str]) -> str:
        run_id = self._child(trial_id)
        self.client.log_batch(run_id, tags=[RunTag(mlflow_key(k), v) for k, v in tags.items()])
        return run_id

    def _op_finish_trial(self, trial_id: str, status: str, reason: str | None, metrics: dict[str, float],
                         nonfinite: dict[str, str], step: int, timestamp_ms: int) -> str:
        run_id = self._op_log_metrics(trial_id, metrics, nonfinite, step, timestamp_ms)
        if reason is not None:
            self.client.set_tag(run_id, TAG_FAILURE, reason)
        self.client.set_terminated(run_id, status=status, end_time=timestamp_ms)
        return run_id

    def _op_replicate_run(self, trial_id: str, index: int, seed: int, metrics: dict[str, float],
                          nonfinite: dict[str, str], timestamp_ms: int) -> str:
        child = self._child(trial_id)
        tags = {TAG_ROLE: "replicate", TAG_PARENT: child, TAG_TRIAL_ID: trial_id, TAG_REPLICATE: str(index)}
        run = self._find_run(tags)
        name = f"{trial_id}-r{index}"
        run_id = run.info.run_id if run is not None else self.client.create_run(
            self.experiment_id(), run_name=name, tags={**tags, TAG_SWEEP_ID: self.sweep_id or "",
                                                       TAG_RUN_NAME: name}).info.run_id
        if run is None:
            self.client.log_param(run_id, "seed", str(seed))
        entries = [Metric(k, v, timestamp_ms, 0) for k, v in metrics.items()]
        nf = [RunTag(f"{TAG_NONFINITE}/{k}", v) for k, v in nonfinite.items()]
        self.client.log_batch(run_id, metrics=entries, tags=nf)
        self.client.set_terminated(run_id, status="FINISHED", end_time=timestamp_ms)
        return run_id

    def _op_finish_parent(self, status: str, timestamp_ms: int) -> str:
        run_id = self._parent()
        self.client.set_terminated(run_id, status=status, end_time=timestamp_ms)
        return run_id

    def _op_log_parent_artifact(self, path: str, artifact_path: str | None) -> str:
        self.client.log_artifact(self._parent(), path, artifact_path)
        return self._parent()

    def _op_log_parent_dict(self, data: dict[str, Any], artifact_file: str) -> str:
        self.client.log_dict(self._parent(), data, artifact_file)
        return self._parent()

    def _op_log_trial_dict(self, trial_id: str, data: dict[str, Any], artifact_file: str) -> str:
        run_id = self._child(trial_id)
        self.client.log_dict(run_id, data, artifact_file)
        return run_id

    def _log_params_and_tags(self, run_id: str, params: dict[str, Any], tags: dict[str, str],
                             dropped: list[str]) -> None:
        """Log params (long values truncated; values already on the run kept) and tags, with notes."""
        values, full = stringify_params(params)
        existing = self.client.get_run(run_id).data.params
        conflicts = sorted(k for k, v in values.items() if k in existing and existing[k] != v)
        if conflicts:
            logger.warning("MLflow run %s keeps its earlier values of params %s", run_id, conflicts)
        notes = {TAG_DROPPED: ", ".join(sorted(dropped)), TAG_TRUNCATED: ", ".join(sorted(full)),
                 TAG_PARAM_CONFLICTS: ", ".join(conflicts)}
        all_tags = {**tags, **{k: v for k, v in notes.items() if v}}
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in values.items() if k not in existing],
                              tags=[RunTag(mlflow_key(k), _tag_value(v)) for k, v in all_tags.items()])
        if full:
            self.client.log_dict(run_id, full, "params_full.json")


def sync_buffer(sweep_dir: Path, tracking_uri: str) -> int:
    """Replay ``<sweep_dir>/mlflow_buffer.jsonl`` into ``tracking_uri``; return the ops replayed.

    For a CLI command after a sweep that ran while its tracking server was down. Assumes one
    experiment per sweep directory (the one named in the buffer).

    Raises:
        ConfigError: the store is unreachable.
    """
    records = OpBuffer(Path(sweep_dir).resolve() / BUFFER_FILE).read()
    if not records:
        return 0
    tracker = SweepTracker(tracking_uri, records[0]["experiment"], Path(sweep_dir))
    return tracker.flush()


