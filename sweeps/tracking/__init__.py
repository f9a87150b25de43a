"""Every sweep and trial on record in MLflow: one parent run per sweep, one nested child run per trial.

One module per concern: ``names`` (tags, limits: the module docstring explains the resilience design),
``uri`` (checking a tracking URI), ``values`` (params, tags, metrics made to fit MLflow), ``buffer``
(unreachable-store detection, the durable operation buffer), ``tracker`` (``SweepTracker``,
``sync_buffer``), ``callback`` (the Ray Tune callback). The study's plots are ``sweeps.report.plots``.
"""

from sweeps.layout import default_tracking_uri
from sweeps.tracking.buffer import OpBuffer, is_unreachable
from sweeps.tracking.callback import (
    MLflowTrialCallback,
    result_metrics,
    trial_error_text,
)
from sweeps.tracking.names import (
    BUFFER_FILE,
    PER_ITEM_ARTIFACT,
    TAG_DROPPED,
    TAG_FAILURE,
    TAG_PARENT,
    TAG_RESTARTS,
    TAG_ROLE,
    TAG_SWEEP_ID,
    TAG_TRIAL_ID,
    RunStatus,
)
from sweeps.tracking.tracker import SweepTracker, sync_buffer
from sweeps.tracking.uri import MLFLOW_UI, check_tracking_uri, runs_page_url
from sweeps.tracking.values import failure_reason, flatten

__all__ = [
    "BUFFER_FILE", "MLFLOW_UI", "PER_ITEM_ARTIFACT", "TAG_DROPPED", "TAG_FAILURE", "TAG_PARENT", "TAG_RESTARTS",
    "TAG_ROLE", "TAG_SWEEP_ID", "TAG_TRIAL_ID", "MLflowTrialCallback", "OpBuffer", "RunStatus", "SweepTracker",
    "check_tracking_uri", "default_tracking_uri", "failure_reason", "flatten", "is_unreachable", "result_metrics",
    "runs_page_url", "sync_buffer", "trial_error_text",
]
