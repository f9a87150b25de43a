"""The methods' drivers side by side (``sweeps.compare.pool``): at most ``at_once`` at a time, one's failure
never stops the others, each outcome read from its driver; with real (tiny, Ray-free) child processes."""

from __future__ import annotations

import json
import sys

from sweeps.compare import compare_from_dict
from sweeps.compare.driver import FAILED, FINISHED, OUTCOME
from sweeps.compare.pool import Job, methods_at_once, run_pool
from tests.sweeps.compare.helpers import tiny_compare


def _job(tmp_path, name: str, code: str) -> Job:
    return Job(name, (sys.executable, "-c", code), tmp_path / "logs" / f"{name}.log")


def _says(status: str, why: str = "", sleep: float = 0.0) -> str:
    line = OUTCOME + json.dumps({"status": status, "why": why})
    return f"import sys, time; time.sleep({sleep}); print('working'); print({line!r}, file=sys.stderr)"


def test_a_failed_method_does_not_stop_the_others_and_at_most_at_once_run(tmp_path):
    jobs = [_job(tmp_path, "a", _says(FINISHED, sleep=0.3)),
            _job(tmp_path, "crash", "import sys; print('Traceback: boom'); sys.exit(3)"),
            _job(tmp_path, "none", _says(FAILED, "no trial finished", sleep=0.1)),
            _job(tmp_path, "b", _says(FINISHED))]
    running, most, order = set(), 0, []

    def start(job):
        nonlocal most
        running.add(job.name)
        most = max(most, len(running))
        order.append(job.name)

    outcomes, signum = run_pool(jobs, 2, on_start=start, on_end=lambda o: running.discard(o.name))
    assert signum is None and most == 2 and order == ["a", "crash", "none", "b"]  # the spec's order
    assert {n: o.status for n, o in outcomes.items()} == {"a": FINISHED, "crash": FAILED, "none": FAILED,
                                                          "b": FINISHED}
    assert outcomes["none"].why == "no trial finished"
    assert "exit code 3" in outcomes["crash"].why and "boom" in outcomes["crash"].why
    assert "working" in (tmp_path / "logs" / "a.log").read_text()  # each driver's output in its own log


def test_as_many_methods_at_once_as_the_cluster_holds(tmp_path, cache_dir):
    data = tiny_compare(tmp_path, cache_dir)  # 2 methods, 2 trials at once each, 1 CPU per trial
    spec = compare_from_dict(data)
    assert methods_at_once(spec, {"CPU": 8.0}) == 2  # every method
    assert methods_at_once(spec, {"CPU": 3.0}) == 1  # one method's trials fit, not two
    assert methods_at_once(spec, {"CPU": 1.0}) == 1  # at least one
    data["budget"]["methods_at_once"] = 1
    assert methods_at_once(compare_from_dict(data), {"CPU": 8.0}) == 1  # the spec's choice
