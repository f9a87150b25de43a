"""A comparison end to end: two methods on the tiny setup, each its own driver process on the comparison's
cluster, the comparison's driver killed (SIGKILL, its method drivers with it) once the first method finished and
the second started, then continued by the same call: nothing lost, nothing run twice, one leaderboard.

Kept cheap (the suite's budget): 2 methods x 2 trials of one epoch, one method at a time (budget.methods_at_once:
side by side, trials in flight at the kill would be lost and run again, and 4 trials on 2 cores take as long as 2
rounds of 2; the pool's concurrency: test_pool.py), no confirmation stage (its resume after a kill is
tests/sweeps/test_faults.py's step 5; the confirmed leaderboard: bench, README)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow.tracking import MlflowClient

from sweeps.compare import load_compare, run_compare
from sweeps.compare.run import COMPARE_FILE, CompareSettings, method_dir
from sweeps.layout import default_tracking_uri
from tests.conftest import REPO
from tests.sweeps.compare.helpers import tiny_compare, write_spec

pytestmark = pytest.mark.slow


def _finished(root) -> list[str]:
    out = []
    for p in (root / "trials").glob("*/trial.json"):
        try:
            if json.loads(p.read_text()).get("status") == "FINISHED":
                out.append(p.parent.name)
        except (OSError, ValueError):
            pass  # being written
    return out


def test_a_comparison_killed_mid_way_continues_to_one_leaderboard(tmp_path, ray_local, cache_dir):
    data = tiny_compare(tmp_path, cache_dir, num_samples=2, epochs=1)
    data["budget"].pop("confirm")
    data["budget"]["methods_at_once"] = 1
    spec_path = write_spec(tmp_path, data)
    root = tmp_path / "out"
    methods = ("satimp", "ga")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    driver = subprocess.Popen([sys.executable, "-m", "sweeps", "compare", str(spec_path), "--out", str(root),
                               "--quiet"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 400
        while not (method_dir(root, "ga") / "sweep.json").is_file():  # the first method finished, the second started
            assert driver.poll() is None, driver.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the second method did not start in 400 s"
            time.sleep(0.1)
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the local Ray cluster it started; the method
        driver.wait(timeout=60)                # drivers die with it (PR_SET_PDEATHSIG)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    done = {m: _finished(method_dir(root, m)) for m in methods}
    assert len(done["satimp"]) == 2 and len(done["ga"]) < 2, "the kill came after the second method finished"

    result = run_compare(load_compare(spec_path), CompareSettings(str(root), progress=False))

    board = result.leaderboard
    assert {r.method for r in board.rows} == {"satimp", "ga"} and not result.failed
    assert all(r.status == "not confirmed" and r.search_runs == 2 for r in board.rows)  # none run twice
    assert all(set(done[m]) <= set(_finished(method_dir(root, m))) for m in methods)  # finished trials kept
    assert all((root / "logs" / f"{m}.log").is_file() for m in methods)  # each method driver's own log
    assert all(r.untuned and r.untuned["trial_id"] for r in board.rows)  # each default ran as the first point
    assert (root / "leaderboard.md").is_file() and (root / "leaderboard.csv").is_file()
    assert json.loads((root / COMPARE_FILE).read_text())["done"] == {"satimp": "finished", "ga": "finished"}
    client = MlflowClient(default_tracking_uri(root))
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED"
    sweeps = client.search_runs([parent.info.experiment_id], "tags.`unlearn.role` = 'sweep'")
    assert len(sweeps) == 2 and {r.data.tags.get("mlflow.parentRunId") for r in sweeps} == {result.parent_run_id}
    assert {a.path for a in client.list_artifacts(result.parent_run_id, "comparison")} >= {
        "comparison/leaderboard.md", "comparison/leaderboard.csv"}

    # the thin CLI on the comparison directory: report, export of one method's best (and its Pareto set)
    from sweeps.cli import main

    assert main(["report", str(root)]) == 0
    assert main(["export-best", str(root), "--out", str(tmp_path / "x.yaml")]) == 2  # which method?
    assert main(["export-best", str(root), "--method", "ga", "--out", str(tmp_path / "ga.yaml"),
                 "--pareto", str(tmp_path / "ga_pareto")]) == 0
    assert (tmp_path / "ga.yaml").is_file() and (tmp_path / "ga_pareto" / "index.yaml").is_file()
    assert main(["export-best", str(root), "--method", "rmu", "--out", str(tmp_path / "y.yaml")]) == 2
