"""The confirmation stage: its race replayed from runs (no Ray), and a real sweep with the stage whose
driver is killed mid-stage and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from sweeps.cli import main
from sweeps.confirm import Candidate, next_jobs, replay, summary
from sweeps.racing import FIRST_TEST
from sweeps.record import Bound
from sweeps.space import Confirm, confirm_seed, load_space
from sweeps.sweep import load_sweep_meta
from tests.conftest import REPO
from tests.helpers import tiny_space


def _space(tmp_path, cache_dir, top=3, runs=12):
    space = load_space(tiny_space(tmp_path, cache_dir))
    return replace(space, budget=replace(space.budget, confirm=Confirm(top=top, runs=runs)))


def _finals(table):
    return {t: {i: {"forget_quality": v, "model_utility": 0.8} for i, v in enumerate(vs)} for t, vs in table.items()}


CANDS = [Candidate("a", {"method.beta1": 1.0}), Candidate("b", {"method.beta1": 2.0}),
         Candidate("c", {"method.beta1": 3.0})]


def test_every_point_gets_the_same_fresh_seed_each_round_until_the_first_test(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir)
    state = replay(space, CANDS, _finals({"a": [], "b": [], "c": []}), ())
    jobs = next_jobs(space, state)
    assert [(j.trial_id, j.index, j.seed) for j in jobs] == [(t, 0, confirm_seed(space, 0)) for t in "abc"]
    state = replay(space, CANDS, _finals({"a": [0.5, 0.6], "b": [0.1, 0.1], "c": [0.4, 0.5]}), ())
    assert state.stopped is None and state.survivors == ("a", "b", "c")  # no test before FIRST_TEST seeds
    assert {j.index for j in next_jobs(space, state)} == {2}


def test_a_point_clearly_worse_is_eliminated_and_a_separated_best_stops_the_race(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir)
    a, b, c = [0.5, 0.55, 0.6], [0.1, 0.12, 0.11], [0.45, 0.62, 0.5]
    state = replay(space, CANDS, _finals({"a": a, "b": b, "c": c}), ())
    assert "b" in state.out and "eliminated after 3 seeds" in state.out["b"] and set(state.survivors) == {"a", "c"}
    assert state.stopped is None and [(j.trial_id, j.index) for j in next_jobs(space, state)] == [("a", 3), ("c", 3)]
    # a far ahead on every further seed: one left, or separated at 95 %
    state = replay(space, CANDS, _finals({"a": a + [0.9] * 4, "b": b, "c": c + [0.1] * 4}), ())
    assert state.stopped in ("one point left", "the best separated at 95%")
    doc = summary(space, state)
    assert doc["best"] == "a" and doc["prob_best"] > 0.9 and doc["runner_up"] in ("b", "c")
    # the same runs give the same decisions (a resumed stage decides the same)
    assert replay(space, CANDS, _finals({"a": a + [0.9] * 4, "b": b, "c": c + [0.1] * 4}), ()) == state


def test_the_runs_budget_ends_the_race_and_a_last_round_goes_to_the_best_means(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir, top=3, runs=10)
    close = {"a": [0.5, 0.4, 0.6], "b": [0.45, 0.55, 0.5], "c": [0.52, 0.48, 0.44]}
    state = replay(space, CANDS, _finals(close), ())
    assert state.stopped is None and state.runs == 9
    jobs = next_jobs(space, state)
    assert [j.trial_id for j in jobs] == ["a"]  # one run left: the best mean (0.5, 0.5, 0.48: a first of ties)
    state = replay(space, CANDS, _finals({**close, "a": close["a"] + [0.5]}), ())
    assert state.stopped == "the runs are spent (10 of 10)" and next_jobs(space, state) == []


def test_a_point_whose_confirmed_mean_breaks_a_constraint_leaves_the_race(tmp_path, cache_dir):
    space = _space(tmp_path, cache_dir)
    finals = _finals({"a": [0.5, 0.55, 0.6], "b": [0.45, 0.5, 0.52], "c": [0.3, 0.6, 0.5]})
    for f in finals["a"].values():
        f["model_utility"] = 0.5
    state = replay(space, CANDS, finals, (Bound("model_utility", "min", 0.7, "0.9 x target"),))
    assert state.out["a"].startswith("infeasible after 3 seeds") and "a" not in state.survivors
    assert summary(space, state)["best"] != "a"


def _launch(space: Path, root: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    return subprocess.Popen([sys.executable, "-m", "sweeps", "launch", str(space), "--out", str(root), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


@pytest.mark.slow
def test_a_sweep_with_a_confirmation_stage_survives_a_driver_kill(tmp_path, ray_local, cache_dir, capsys):
    """The launch is a driver process of its own (with the local cluster it starts), killed with SIGKILL once
    the stage ran a run; the resume and the report run in this process, on the session's cluster (a second
    driver start-up costs ~20 s on 2 cores)."""
    path = tiny_space(tmp_path, cache_dir, num_samples=2, epochs=1)  # 2 search + 6 confirmation runs
    data = yaml.safe_load(path.read_text())
    data["budget"]["confirm"] = {"top": 2, "runs": 6}
    path.write_text(yaml.safe_dump(data))
    root = tmp_path / "out"
    proc = _launch(path, root)
    try:  # the kill lands inside the stage: once its first run finished
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not list((root / "confirm").glob("*/*/results.json")):
            assert proc.poll() is None, "the sweep ended before its confirmation stage ran a run"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    done_before = {p.parent: p.stat().st_mtime_ns for p in (root / "confirm").glob("*/*/results.json")}
    assert done_before, "no confirmation run finished within 600 s"
    capsys.readouterr()
    assert main(["resume", str(root), "--quiet"]) == 0, capsys.readouterr().err[-3000:]
    assert all(p.joinpath("results.json").stat().st_mtime_ns == t for p, t in done_before.items())  # not re-run
    doc = json.loads((root / "confirm" / "confirmation.json").read_text())
    cands = json.loads((root / "confirm" / "candidates.json").read_text())["candidates"]
    assert len(cands) == 2 and doc["best"] in {c["trial_id"] for c in cands}
    assert doc["runs"] <= 6 and doc["runs"] >= 2 * FIRST_TEST or doc["stopped"] == "one point left"
    seeds = [c["seeds"] for c in doc["candidates"]]
    shared = set(seeds[0]) & set(seeds[1])
    assert shared and all(seeds[0][i] == seeds[1][i] for i in shared)  # common seeds across the points
    search_seeds = {r["seed"] for p in (root / "trials").glob("*/record.json")
                    for r in json.loads(p.read_text())["replicates"]}
    assert not search_seeds & {s for c in seeds for s in c.values()}  # fresh: no search trial used them
    best_yaml = (root / "best_config.yaml").read_text()
    assert f"best trial {doc['best']}" in best_yaml and "probability of being the best of the 2 confirmed" in best_yaml
    meta = load_sweep_meta(root)
    client = MlflowClient(meta["tracking_uri"])
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`unlearn.stage` = 'confirmation'")
    ids = [r.data.tags["unlearn.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == doc["runs"]  # one MLflow child per confirmation run, none twice
    for r in runs:  # each with its per-question statistics
        path = client.download_artifacts(r.info.run_id, "per_item.json", str(tmp_path / r.info.run_id))
        per_item = json.loads(Path(path).read_text())["replicates"][0]["per_item"]
        assert len(per_item["forget_truth_ratio"]) == len(per_item["forget_prob"]) > 0
    capsys.readouterr()
    assert main(["report", str(root)]) == 0
    report = capsys.readouterr().out
    assert "the confirmation stage's pick" in report and "confirmed best:" in report
