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

import re
from typing import Literal

BUFFER_FILE = "mlflow_buffer.jsonl"
REJECTED_FILE = "mlflow_buffer.rejected.jsonl"
ARTIFACT_DIR = "mlartifacts"
PER_ITEM_ARTIFACT = "per_item.json"  # a trial run's per-question statistics, one entry per replicate

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
TAG_REPLICATE = "unlearn.replicate"
TAG_FEASIBLE = "unlearn.feasible"
TAG_PARENT = "mlflow.parentRunId"
# The experiment's kind for MLflow 3 UIs that read it (up to 3.x before the workflow switch). MLflow 3.17's
# UI ignores the tag: an experiment opens as the UI's workflow type says (a sidebar switch kept in the
# browser, "genai" by default: the GenAI overview), or the page URL's ``workflowType`` (``runs_page_url``).
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
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


