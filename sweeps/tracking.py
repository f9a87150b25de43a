"""Every sweep and trial on record in MLflow: one parent run per sweep, one nested child run per trial.

The sweep *driver* is the only MLflow writer (so a sqlite store has a single writer). A
:class:`SweepTracker` talks to the store through an explicit ``mlflow.MlflowClient`` (no global
``mlflow.set_tracking_uri``); :class:`MLflowTrialCallback` plugs it into Ray Tune.

Resilience: every store operation goes through :meth:`SweepTracker._call`. When the tracking server
is unreachable (connection errors, HTTP 5xx after MLflow's own short retries, a locked sqlite file),
the operation is appended to ``<sweep_dir>/mlflow_buffer.jsonl`` instead of failing the sweep, and
:meth:`SweepTracker.flush` replays it, in order, once the server answers again. Buffered operations
name trials and the sweep by *id* (never by MLflow run id), so a replay resolves runs afresh and works
from another process too (:func:`sync_buffer`).

Runs are found again by tags, which makes every operation idempotent on a restart:

- parent: ``unlearn.role=sweep`` + ``unlearn.sweep_id``;
- child: ``unlearn.role=trial`` + ``mlflow.parentRunId`` + ``unlearn.trial_id``; its tag
  ``unlearn.restarts`` is written last when the run is created and incremented on each reuse.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import logging
import math
import numbers
import os
import re
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import requests
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunTag
from mlflow.exceptions import MlflowException, RestException
from ray.tune import Callback

from unlearn.errors import ConfigError

from sweeps.envvars import scoped_env

logger = logging.getLogger(__name__)

BUFFER_FILE = "mlflow_buffer.jsonl"
REJECTED_FILE = "mlflow_buffer.rejected.jsonl"
ARTIFACT_DIR = "mlartifacts"

TAG_ROLE = "unlearn.role"
TAG_SWEEP_ID = "unlearn.sweep_id"
TAG_TRIAL_ID = "unlearn.trial_id"
TAG_RESTARTS = "unlearn.restarts"
TAG_RESUMES = "unlearn.resumes"
TAG_FAILURE = "unlearn.failure_reason"
TAG_PREVIOUS_FAILURE = "unlearn.previous_failure_reason"
TAG_DROPPED = "unlearn.dropped_secrets"
TAG_TRUNCATED = "unlearn.truncated_params"
TAG_PARAM_CONFLICTS = "unlearn.param_conflicts"
TAG_NONFINITE = "unlearn.nonfinite"  # + "/<metric key>"
TAG_PARENT = "mlflow.parentRunId"
TAG_RUN_NAME = "mlflow.runName"

PARAM_VALUE_LIMIT = 500  # conservative: older MLflow servers reject longer values (3.x allows 6000)
TAG_VALUE_LIMIT = 5000  # MLflow's limit is 8000
REASON_LIMIT = 2000
SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
RunStatus = Literal["FINISHED", "FAILED", "KILLED"]

# MLflow reads its HTTP retry settings only from os.environ, at request time (defaults: 7 retries with
# exponential backoff and a 120 s timeout, i.e. minutes per call against a dead server). They are set
# for the duration of this module's own calls (scoped_env), never over a user's value.
_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
FLUSH_RETRY_INTERVAL_S = 30.0  # while the server is down, ops go straight to the buffer in between
_VALID_URIS = "sqlite:////absolute/path/mlflow.db, http://host:port or https://host[:port]"
_KEY_CHARS = re.compile(r"[^/\w.\- :]")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its tracebacks


# --------------------------------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------------------------------
def default_tracking_uri(sweep_dir: Path) -> str:
    """The sweep's own sqlite store, ``sqlite:///<absolute sweep_dir>/mlflow.db``.

    The path is absolute: a relative one would give each process (and each cwd) its own database.
    """
    return f"sqlite:///{(Path(sweep_dir).resolve() / 'mlflow.db').as_posix()}"


def check_tracking_uri(uri: str) -> None:
    """Fail fast, before a sweep starts, on a tracking URI the sweep could not write to.

    http(s): the server must answer ``GET <uri>/health`` within 3 s. sqlite: the path must be absolute
    and its directory must exist or be creatable. Any other scheme is rejected.

    Raises:
        ConfigError: naming the URI and what would be valid.
    """
    if uri.startswith(("http://", "https://")):
        _check_http(uri)
    elif uri.startswith("sqlite:"):
        _check_sqlite(uri)
    else:
        raise ConfigError(f"tracking URI {uri!r} is not supported; valid: {_VALID_URIS}")


def _check_http(uri: str) -> None:
    url = f"{uri.rstrip('/')}/health"
    try:
        response = requests.get(url, timeout=3)
    except requests.RequestException as e:
        raise ConfigError(
            f"MLflow tracking server {uri!r} is not reachable ({type(e).__name__}); start it "
            f"(mlflow server --backend-store-uri sqlite:////abs/mlflow.db --host 127.0.0.1 --port 5000) "
            f"or use another URI; valid: {_VALID_URIS}"
        ) from None
    if response.status_code != 200:
        raise ConfigError(
            f"{url} answered HTTP {response.status_code}: {uri!r} is not a healthy MLflow tracking "
            f"server; valid: {_VALID_URIS}"
        )


def _sqlite_path(uri: str) -> Path:
    if not uri.startswith("sqlite:///") or len(uri) <= len("sqlite:///"):
        raise ConfigError(f"tracking URI {uri!r} has no database file; valid: {_VALID_URIS}")
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path.startswith("/"):
        raise ConfigError(
            f"tracking URI {uri!r} is a relative sqlite path (each process would get its own database); "
            f"use an absolute one: sqlite:///{Path(path).resolve().as_posix()}"
        )
    return Path(path)


def _check_sqlite(uri: str) -> None:
    from sweeps.checks import check_sqlite_file

    if _sqlite_path(uri).is_dir():
        raise ConfigError(f"tracking URI {uri!r} names a directory, not a database file; valid: {_VALID_URIS}")
    check_sqlite_file(_sqlite_path(uri), f"tracking URI {uri!r}")
    parent = _sqlite_path(uri).parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"tracking URI {uri!r}: directory {parent} does not exist and cannot be created "
            f"({existing} is not a writable directory); valid: {_VALID_URIS}"
        )


# --------------------------------------------------------------------------------------------------
# Params, tags, metrics: pure helpers
# --------------------------------------------------------------------------------------------------
def flatten(d: Mapping[str, Any], sep: str = ".", prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to ``{"a.b": v}``; lists and other values stay as they are."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flatten(value, sep, name))
        else:
            out[name] = value
    return out


def is_secret(name: str) -> bool:
    """True if a param/tag name looks like a credential (contains TOKEN, KEY, SECRET or PASSWORD)."""
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


def split_secrets(d: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Return ``(d without secret-looking names, sorted dropped names)``."""
    kept = {k: v for k, v in d.items() if not is_secret(k)}
    return kept, sorted(set(d) - set(kept))


def mlflow_key(name: str) -> str:
    """A name MLflow accepts for a param/metric/tag: invalid characters become ``_``."""
    key = _KEY_CHARS.sub("_", str(name))
    key = "/".join(p for p in key.split("/") if p not in ("", ".", ".."))
    return key[:250] or "_"


def stringify_params(params: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """Flatten to dotted keys and stringify; return ``(loggable params, full values of truncated ones)``."""
    out: dict[str, str] = {}
    full: dict[str, str] = {}
    for key, value in flatten(params).items():
        text = json.dumps(value, default=str) if isinstance(value, (list, tuple)) else str(value)
        name = mlflow_key(key)
        if len(text) > PARAM_VALUE_LIMIT:
            full[name] = text
            text = text[: PARAM_VALUE_LIMIT - 3] + "..."
        out[name] = text
    return out, full


def _tag_value(value: Any, limit: int = TAG_VALUE_LIMIT) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def split_finite(metrics: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, str]]:
    """Split metrics into ``(finite floats, {key: repr} of non-finite ones)``; non-numerics are dropped."""
    finite: dict[str, float] = {}
    bad: dict[str, str] = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            continue
        value = float(value)
        if math.isfinite(value):
            finite[mlflow_key(key)] = value
        else:
            bad[mlflow_key(key)] = str(value)
    return finite, bad


def failure_reason(text: str, head_lines: int = 15) -> str:
    """A short failure reason from an error trace: its last line (the exception) then its first lines."""
    text = _ANSI.sub("", text)
    lines = [line.rstrip() for line in text.strip().splitlines() if line.strip(" ^~\t")]
    if not lines:
        return "unknown error"
    reason = "\n".join([lines[-1], "---", *lines[:head_lines]]) if len(lines) > 1 else lines[0]
    return _tag_value(reason, REASON_LIMIT)


def _code_tags() -> dict[str, str]:
    """The package version and, when the package lives in a git checkout, its commit."""
    tags = {"unlearn.version": _package_version()}
    repo = Path(__file__).resolve().parents[1]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True)
        tags["mlflow.source.git.commit"] = tags["unlearn.git_commit"] = out.stdout.strip()
    return tags


def _package_version() -> str:
    try:
        return importlib.metadata.version("unlearn-sweeps")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_id(kind: str, value: str) -> str:
    # ids end up inside MLflow filter strings, which have no escaping for quotes
    if not value or any(c in value for c in "'\"`\\\n"):
        raise ConfigError(f"{kind} {value!r} is invalid: it must be non-empty, without quotes or backslashes")
    return value


def _check_status(status: str) -> None:
    if status not in ("FINISHED", "FAILED", "KILLED"):
        raise ConfigError(f"run status {status!r} is invalid; valid: FINISHED, FAILED, KILLED")


def _now_ms() -> int:
    return int(time.time() * 1000)


# --------------------------------------------------------------------------------------------------
# Failure classification and the local buffer
# --------------------------------------------------------------------------------------------------
def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` means "the store is down or busy, try again later" (not a bad request)."""
    import sqlalchemy.exc
    import urllib3.exceptions

    transient = (ConnectionError, TimeoutError, requests.ConnectionError, requests.Timeout,
                 urllib3.exceptions.HTTPError)
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, transient):
            return True
        if isinstance(e, RestException) and e.get_http_status_code() >= 500:
            return True
        if isinstance(e, sqlalchemy.exc.OperationalError) and "locked" in str(e):
            return True
        e = e.__cause__ or e.__context__
    # http_request re-raises connection failures as a bare MlflowException with this wording
    return isinstance(exc, MlflowException) and str(exc).startswith("API request to") and (
        "failed with exception" in str(exc) or "timeout" in str(exc)
    )


class OpBuffer:
    """Buffered store operations, one JSON object a line: ``{"op", "kwargs", "experiment", "sweep_id", "ts"}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, record: dict[str, Any]) -> None:
        """Append one record durably (the driver may die right after)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read(self) -> list[dict[str, Any]]:
        """All records, oldest first (a torn last line, from a crash mid-write, is skipped)."""
        if not self.path.is_file():
            return []
        records = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                records.append(json.loads(line))
        return records

    def replace(self, records: list[dict[str, Any]]) -> None:
        """Atomically keep only ``records`` (removing the file when there are none)."""
        if not records:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r, default=str) + "\n" for r in records), encoding="utf-8")
        os.replace(tmp, self.path)

    def __len__(self) -> int:
        return len(self.read())


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
                return self.client.create_experiment(self.experiment_name, artifact_location=location)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":  # else created meanwhile by someone else
                    raise
                exp = self.client.get_experiment_by_name(self.experiment_name)
                if exp is None:
                    raise
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

    def finish_parent(self, status: RunStatus = "FINISHED") -> str | None:
        """End the parent run (after replaying whatever the buffer still holds)."""
        _check_status(status)
        return self._call("finish_parent", status=status, timestamp_ms=_now_ms())

    def log_parent_artifact(self, path: Path, artifact_path: str | None = None) -> str | None:
        """Log a local file to the parent run (the file must still exist if the op is buffered)."""
        return self._call("log_parent_artifact", path=str(Path(path).resolve()), artifact_path=artifact_path)

    def log_parent_figure(self, fig: Any, name: str) -> str | None:
        """Log a plotly figure as HTML (via ``MlflowClient.log_figure``); ``name`` e.g. ``plots/history.html``."""
        artifact_file = name if name.endswith(".html") else f"{name}.html"
        return self._call("log_parent_figure", figure_json=fig.to_json(), artifact_file=artifact_file)

    def log_parent_dict(self, d: Mapping[str, Any], name: str) -> str | None:
        """Log a dict as JSON or YAML (by ``name``'s suffix) to the parent run."""
        data = json.loads(json.dumps(d, default=str))  # what is logged is what a replay would log
        return self._call("log_parent_dict", data=data, artifact_file=name)

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

    def _op_finish_parent(self, status: str, timestamp_ms: int) -> str:
        run_id = self._parent()
        self.client.set_terminated(run_id, status=status, end_time=timestamp_ms)
        return run_id

    def _op_log_parent_artifact(self, path: str, artifact_path: str | None) -> str:
        self.client.log_artifact(self._parent(), path, artifact_path)
        return self._parent()

    def _op_log_parent_figure(self, figure_json: str, artifact_file: str) -> str:
        import plotly.io

        self.client.log_figure(self._parent(), plotly.io.from_json(figure_json), artifact_file)
        return self._parent()

    def _op_log_parent_dict(self, data: dict[str, Any], artifact_file: str) -> str:
        self.client.log_dict(self._parent(), data, artifact_file)
        return self._parent()

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
    """

    def __init__(self, tracker: SweepTracker, max_steps: int | None = None,
                 params_of: Callable[[Any], dict[str, Any]] = params_of,
                 trial_id_of: Callable[[Any], str] = trial_id_of) -> None:
        self.tracker = tracker
        self.max_steps = max_steps
        self.params_of = params_of
        self.trial_id_of = trial_id_of
        self._started: set[str] = set()
        self._stopped_at: dict[str, int] = {}
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
            self._submit(self.tracker.finish_trial, tid, "FINISHED")
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

    @staticmethod
    def _safely(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            logger.exception("MLflow tracking failed in %s; the sweep goes on", getattr(fn, "__name__", fn))


# --------------------------------------------------------------------------------------------------
# Sweep artifacts: Optuna's own table and plots
# --------------------------------------------------------------------------------------------------
def trials_dataframe(study: Any) -> Any:
    """All trials of an Optuna study as a pandas DataFrame (one row per trial, params as columns)."""
    return study.trials_dataframe(multi_index=False)


def _find_param(names: set[str], dotted: str) -> str | None:
    """The study's name for a dotted param (OptunaSearch may spell ``method.beta1`` as ``method/beta1``)."""
    return next((n for n in sorted(names) if n.replace("/", ".") == dotted), None)


def _objectives(study: Any) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """Per objective: (name suffix, plot kwargs, importance kwargs); one unnamed entry if single-objective."""
    import optuna

    if len(study.directions) == 1:
        return [("", {}, {})]
    names = list(study.metric_names or [f"objective_{i}" for i in range(len(study.directions))])
    out = []
    for i, (name, direction) in enumerate(zip(names, study.directions)):
        sign = -1.0 if direction == optuna.study.StudyDirection.MAXIMIZE else 1.0  # importances assume minimise
        out.append((f"_{name}", {"target": lambda t, i=i: t.values[i], "target_name": name},
                    {"target": lambda t, i=i, s=sign: s * t.values[i], "target_name": name}))
    return out


def _importances(study: Any, kw: dict[str, Any]) -> Any:
    from optuna import visualization as vis

    with warnings.catch_warnings():
        # Optuna warns that a custom target is minimised: _objectives already negated maximised ones
        warnings.filterwarnings("ignore", message=".*to achieve low `target` values.*")
        return vis.plot_param_importances(study, **kw)


def study_figures(study: Any, contour: tuple[str, str] = ("method.beta1", "method.beta2")) -> dict[str, Any]:
    """Optuna's plots of a study, by name; plots a study cannot support are skipped (with a log line)."""
    from optuna import visualization as vis
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        logger.info("no completed trial: no sweep plots")
        return {}
    params = {p for t in complete for p in t.params}
    pair = [_find_param(params, p) for p in contour]
    figures: dict[str, Callable[[], Any]] = {}
    for suffix, kw, imp_kw in _objectives(study):
        figures[f"optimization_history{suffix}"] = lambda kw=kw: vis.plot_optimization_history(study, **kw)
        if len(complete) >= 2 and len(params) >= 2:
            figures[f"param_importances{suffix}"] = lambda kw=imp_kw: _importances(study, kw)
        if all(pair):
            figures[f"contour{suffix}"] = lambda kw=kw: vis.plot_contour(study, params=pair, **kw)
    if len(study.directions) in (2, 3):
        names = [kw["target_name"] for _, kw, _ in _objectives(study)]
        figures["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=names)
    return {name: fig for name, make in figures.items() if (fig := _render(name, make)) is not None}


def _render(name: str, make: Callable[[], Any]) -> Any | None:
    try:
        return make()
    except (ValueError, RuntimeError, ZeroDivisionError, ImportError) as e:
        logger.warning("skipping sweep plot %s: %s", name, e)
        return None


def log_sweep_artifacts(tracker: SweepTracker, study: Any, space_yaml_path: Path,
                        best_config: Mapping[str, Any] | None, out_dir: Path) -> dict[str, Path]:
    """Write the sweep's summary to ``out_dir`` and log it to the parent run.

    Logged: the search space YAML (``sweep/``), the best config (``sweep/best_config.yaml``; none when
    ``best_config`` is None: no trial finished), all trials (``sweep/trials.csv``) and Optuna's plots as
    HTML (``plots/<name>.html``; local copies share one ``plotly.min.js`` so they open offline).

    Returns:
        The local files written, by name.
    """
    import yaml

    out_dir = Path(out_dir)
    (out_dir / "plots").mkdir(parents=True, exist_ok=True)
    files = {"trials": out_dir / "trials.csv"}
    if best_config is not None:
        files["best_config"] = out_dir / "best_config.yaml"
        files["best_config"].write_text(yaml.safe_dump(json.loads(json.dumps(dict(best_config), default=str)),
                                                       sort_keys=False))
    else:
        (out_dir / "best_config.yaml").unlink(missing_ok=True)
    trials_dataframe(study).to_csv(files["trials"], index=False)
    for path in (Path(space_yaml_path), files.get("best_config"), files["trials"]):
        if path is not None:
            tracker.log_parent_artifact(path, "sweep")
    for name, fig in study_figures(study).items():
        files[name] = out_dir / "plots" / f"{name}.html"
        fig.write_html(files[name], include_plotlyjs="directory")
        tracker.log_parent_figure(fig, f"plots/{name}.html")
    return files
