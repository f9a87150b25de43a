"""One method of a comparison as a driver process of its own (``python -m sweeps.compare JOB``): what a
user would run by hand beside the others with ``--address``. It launches the method's sweep into
``DIR/methods/<name>/`` (an ordinary sweep, nested under the comparison's MLflow run) or resumes it, on the
comparison's cluster, and says how it ended in its last line (``OUTCOME`` + JSON) and its exit code.

Why a process and not a thread of the comparison's driver: Ray Tune runs one experiment per driver. Its
trainable registry is per job and keyed by the trainable's name (``ray.tune.registry``, Ray 2.60): a second
``Tuner.fit`` of the same trainable in the same process replaces the first one's, and Tune's stop signals
reach the main thread only. One driver per method is also what Ray documents for several Tune runs on one
cluster (Tune FAQ, "multi-tenancy").
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

OUTCOME = "compare-method-outcome: "  # the driver's last line: OUTCOME {"status": ..., "why": ...}
FINISHED, FAILED, INTERRUPTED = "finished", "failed", "interrupted"


@dataclass(frozen=True)
class MethodJob:
    """What one method's driver needs. ``address``: the user's (``--address``, None: RAY_ADDRESS or local),
    recorded in the sweep's settings; ``cluster`` / ``cluster_env``: the running cluster this driver joins
    and its job's worker environment (``cluster.job_attachment``; None: connect to ``address`` itself)."""

    root: str
    method: str
    address: str | None = None
    cluster: str | None = None
    cluster_env: dict[str, str] = field(default_factory=dict)
    progress: bool = True
    verbose: bool = False

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "sweeps.compare", json.dumps(asdict(self))]


def run_method(job: MethodJob) -> None:
    """Launch or resume ``job.method``'s sweep (raises what ``launch_sweep`` / ``resume_sweep`` raise)."""
    from sweeps.cluster import ensure_ray
    from sweeps.compare.run import load_compare_dir, method_dir
    from sweeps.layout import SWEEP_FILE, SweepSettings
    from sweeps.sweep import launch_sweep, resume_sweep

    spec, doc = load_compare_dir(job.root)
    m = spec.method(job.method)
    d = method_dir(Path(job.root), m.name)
    if job.cluster:  # the comparison's own local cluster: joined here, so the sweep's settings keep `address`
        ensure_ray(job.cluster, verbose=job.verbose, env=job.cluster_env)
    if (d / SWEEP_FILE).is_file():
        resume_sweep(d, address=job.address, progress=job.progress, verbose=job.verbose)
    else:
        launch_sweep(m.space, settings=SweepSettings(
            out_dir=str(d), address=job.address, mlflow_uri=doc["tracking_uri"], progress=job.progress,
            verbose=job.verbose, experiment=doc["experiment"], parent_run_id=doc["parent_run_id"]))


def _say(status: str, why: str = "") -> None:
    print(OUTCOME + json.dumps({"status": status, "why": why}), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    from sweeps.envvars import QUIET_ENV, scoped_env
    from sweeps.signals import SweepInterrupted
    from sweeps.sweep import NoTrialFinished
    from unlearn.errors import UnlearnError

    job = MethodJob(**json.loads((sys.argv[1:] if argv is None else argv)[0]))
    with scoped_env({} if job.verbose else QUIET_ENV, keep_set=True):
        try:
            run_method(job)
        except SweepInterrupted as e:
            _say(INTERRUPTED, str(e))
            return 128 + e.signum
        except KeyboardInterrupt:  # a second stop signal: stopped at once, resumable
            _say(INTERRUPTED, "interrupted")
            return 130
        except NoTrialFinished as e:
            _say(FAILED, str(e))
            return 1
        except UnlearnError as e:
            _say(FAILED, f"error: {e}")
            return 2
        except Exception as e:  # noqa: BLE001 -- this process is the method's; the log keeps the traceback
            traceback.print_exc()
            _say(FAILED, f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}")
            return 1
    _say(FINISHED)
    return 0

