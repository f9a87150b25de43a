"""Real faults injected into real processes: nothing lost, nothing duplicated, every error clear."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from sweeps.cli import main
from sweeps.lock import check_unlocked
from sweeps.report import collect_trials
from sweeps.fit import INTERRUPTED_REASON, LOST_REASON
from sweeps.sweep import SweepSettings, launch_sweep, load_sweep_meta, resume_sweep
from sweeps.tracking import BUFFER_FILE, PER_ITEM_ARTIFACT
from sweeps.ray_run import run_unlearning
from tests.conftest import REPO
from tests.helpers import MlflowServer, RayNodes, free_port, tiny_space
from unlearn.train.config import run_config_from_dict

pytestmark = pytest.mark.slow


def _children(root: Path):
    meta = load_sweep_meta(root)
    client = MlflowClient(meta["tracking_uri"])
    parents = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`unlearn.sweep_id` = '{meta['sweep_id']}' and tags.`unlearn.role` = 'sweep'")
    assert len(parents) == 1, "one parent run per sweep"
    kids = client.search_runs([parents[0].info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    return client, parents[0], kids


def _train_worker_pids(dashboard: str) -> list[int]:
    """The live Ray Train workers of the cluster whose dashboard (state API) is ``dashboard``: not ``pgrep``,
    which also finds the workers of any other Ray cluster on the machine (another test session's)."""
    from ray.util.state import list_actors

    actors = list_actors(address=dashboard, filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")])
    return [a.pid for a in actors]


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory, cache_dir):
    """One sweep, three trials, launched by the CLI onto a real two-node cluster (``--address``; a head and a
    worker node, Ray Train workers on both): one diverges (absurd learning rate), one runs out of memory
    (its worker may allocate 2 MB: loading the model fails for real), and the Ray Train worker of the third
    is killed (SIGKILL) mid-run, after its first checkpoint. One sweep and one cluster for these faults:
    a cluster's start costs ~40 s on 2 cores, a sweep's ~20 s."""
    tmp_path = tmp_path_factory.mktemp("failing")
    # ray_train: the memory cap is a Ray Train worker's, and a worker to kill
    path = tiny_space(tmp_path, cache_dir, num_samples=3, epochs=4, launcher="ray_train")
    space = yaml.safe_load(path.read_text())
    space["base"]["epoch_eval"] = True  # an evaluation per epoch leaves time to inject the fault mid-run
    space["parameters"]["optim.lr"] = {"distribution": "loguniform", "low": 1e-3, "high": 1e9}
    space["parameters"]["scaling.memory_limit_gb"] = {"distribution": "categorical", "choices": [0.002, 4.0]}
    space["initial_points"] = [
        {"method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 1e9, "scaling.memory_limit_gb": 4.0},
        {"method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 3e-3, "scaling.memory_limit_gb": 0.002},
        {"method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 3e-3, "scaling.memory_limit_gb": 4.0}]
    path.write_text(yaml.safe_dump(space))
    root = tmp_path / "out"
    killed: list[int] = []
    nodes = RayNodes(tmp_path)

    def kill_after_a_registered_checkpoint():  # only the fine trial gets this far
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and not killed:
            if list((root / "ray" / "train").glob("trial-*/epoch_0002")):  # epoch 1 surely registered
                pids = _train_worker_pids(nodes.dashboard)
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.05)

    try:
        nodes.start()
        t = threading.Thread(target=kill_after_a_registered_checkpoint, daemon=True)
        t.start()
        env = {**os.environ, "RAY_ADDRESS": nodes.address, "RAY_AUTH_MODE": "disabled"}
        out = subprocess.run([sys.executable, "-m", "sweeps", "launch", str(path), "--out", str(root),
                              "--address", nodes.address, "--quiet"], capture_output=True, text=True, env=env,
                             cwd=REPO, timeout=600)
        t.join(timeout=5)
    finally:
        nodes.stop()
    client, _, kids = _children(root)
    meta = load_sweep_meta(root)
    study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
    trials = collect_trials(root)
    by_lr_cap = {(t.params["optim.lr"], t.params["scaling.memory_limit_gb"]): t for t in trials}
    return FaultySweep(out, by_lr_cap, {k.data.tags["unlearn.trial_id"]: k for k in kids}, study, client, killed)


@dataclass
class FaultySweep:
    out: subprocess.CompletedProcess
    trials: dict  # by (optim.lr, scaling.memory_limit_gb)
    kids: dict  # MLflow child runs by trial id
    study: optuna.Study
    client: MlflowClient
    killed: list[int]  # the pid of the Ray Train worker killed


def test_worker_killed_mid_trial_restarts_from_checkpoint(failing_sweep, tmp_path):
    assert failing_sweep.killed, "the fault was not injected"
    trial = failing_sweep.trials[(3e-3, 4.0)]
    assert trial.status == "FINISHED"
    kid = failing_sweep.kids[trial.trial_id]  # one MLflow run, not two
    assert [k.data.tags["unlearn.trial_id"] for k in failing_sweep.kids.values()].count(trial.trial_id) == 1
    history = failing_sweep.client.get_metric_history(kid.info.run_id, "train/resumed_from_epoch")
    assert history and history[0].value >= 1.0  # the restart is on record
    # final metrics equal an uninterrupted run of the same resolved config (same seed); run in this process
    # (launcher local: the same run bit for bit, tests/sweeps/test_ray_run.py) to spare a Ray Train start-up
    cfg = run_config_from_dict(json.loads((trial.dir / "config.json").read_text()))
    cfg = replace(cfg, scaling=replace(cfg.scaling, launcher="local"))
    clean = run_unlearning(cfg, tmp_path / "clean", log=lambda s: None)
    final = json.loads((trial.run_dir / "results.json").read_text())["final"]
    for key in ("train/loss", "forget_truth_ratio", "forget_quality"):
        assert final[key] == pytest.approx(clean.metrics[key], rel=1e-5, abs=1e-8)


def test_a_sweep_launched_onto_a_two_node_cluster_runs_there(failing_sweep):
    out, trials = failing_sweep.out, failing_sweep.trials
    assert out.returncode == 0, out.stderr[-3000:]  # one trial finished: the sweep chose
    line = next((x for x in out.stdout.splitlines() if x.startswith("trials: ")), "")
    assert "1 finished" in line and "2 failed" in line, out.stdout[-3000:]
    assert (trials[(3e-3, 4.0)].run_dir / "results.json").is_file()


def test_diverging_trial_is_failed_and_the_sweep_goes_on(failing_sweep):
    trials, kids, study = failing_sweep.trials, failing_sweep.kids, failing_sweep.study
    diverged = trials[(1e9, 4.0)]
    assert diverged.status == "FAILED"
    assert "loss is" in diverged.reason and "optim.lr" in diverged.reason
    assert kids[diverged.trial_id].info.status == "FAILED"
    assert "loss is" in kids[diverged.trial_id].data.tags["unlearn.failure_reason"]
    assert trials[(3e-3, 4.0)].status == "FINISHED"  # the sweep went on
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL", "FAIL"]


def test_out_of_memory_trial_says_so_and_what_to_change(failing_sweep):
    trials, kids = failing_sweep.trials, failing_sweep.kids
    oom = trials[(3e-3, 0.002)]
    assert oom.status == "FAILED"
    assert "out of memory" in oom.reason
    assert "optim.micro_batch_size" in oom.reason and "scaling.memory_limit_gb (now 0.002)" in oom.reason
    assert kids[oom.trial_id].info.status == "FAILED"
    assert "out of memory" in kids[oom.trial_id].data.tags["unlearn.failure_reason"]
    assert trials[(3e-3, 4.0)].status == "FINISHED"  # the sweep went on


def _records(root: Path) -> dict[str, dict]:
    """Each trial's ledger record (``trials/<id>/trial.json``) by trial id."""
    records = {}
    for p in (root / "trials").glob("*/trial.json"):
        try:
            records[p.parent.name] = json.loads(p.read_text())
        except json.JSONDecodeError:
            pass  # being replaced right now
    return records


def _trial_states(root: Path) -> list[str]:
    return [r.get("status") for r in _records(root).values()]


def _driver(*argv: str, output: bool = True) -> subprocess.Popen:
    """``python -m sweeps ARGV`` as a real driver process in a session of its own: it starts its own local Ray
    cluster (the test session's RAY_ADDRESS removed), which a SIGKILL of its process group takes with it."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    pipe = subprocess.PIPE if output else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", "sweeps", *argv], cwd=REPO, env=env, stdout=pipe, stderr=pipe,
                            text=True, start_new_session=True)


def _wait_for(what: str, ready, root: Path, driver: subprocess.Popen | None, timeout_s: float = 400) -> dict[str, dict]:
    """Poll the trials' records until ``ready(records)`` while ``driver``, the process a fault is meant for,
    still runs (None: this process); the records that were ready."""
    deadline = time.monotonic() + timeout_s
    while not ready(records := _records(root)):
        if driver is not None and driver.poll() is not None:
            err = driver.communicate()[1] or ""
            raise AssertionError(f"the driver ended (exit {driver.returncode}) before {what}\n{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {timeout_s} s")
        time.sleep(0.1)
    return records


def _with_status(records: dict[str, dict], status: str) -> dict[str, int]:
    """The trials of ``records`` in ``status``, with how often each started."""
    return {k: t["starts"] for k, t in records.items() if t["status"] == status}


def _lock_holder_pid(root: Path) -> int | None:
    try:
        return json.loads((root / ".sweep.lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


@contextmanager
def _step(name: str) -> Iterator[None]:
    """A failure inside names the step of the chained test it happened in."""
    __tracebackhide__ = True  # pytest shows the failing line in the test, not this helper
    try:
        yield
    except AssertionError as e:
        raise AssertionError(f"step '{name}': {e}").with_traceback(e.__traceback__) from None
    except Exception as e:
        e.add_note(f"in step '{name}' of the chained driver faults")
        raise


def _check_stopped(root: Path, code: int, out: str, err: str, signum: int, running: set[str],
                   finished: dict[str, int]) -> dict[str, dict]:
    """What a driver stopped by ``signum`` (SIGINT: Ctrl-C; SIGTERM: a cluster scheduler) promises: exit
    ``code`` 128 + signum and the one line that says how to go on (``err``), the table of what ran (``out``),
    the trials it ran (at least ``running``) closed as KILLED with the reason in the ledger and MLflow,
    ``finished`` ones neither re-run nor touched, one sweep (one parent run, one study) and the directory
    free for a resume."""
    name = signal.Signals(signum).name
    assert code == 128 + signum, err[-3000:]
    assert f"interrupted ({name}); continue it with: unlearn-sweep resume {root}" in err, err[-3000:]
    assert "trials:" in out  # the table of what ran so far
    trials = _records(root)
    stopped = {k for k, t in trials.items() if t["status"] != "FINISHED"}
    # a trial that ran when the signal came was stopped, unless it finished in the instant between the test's
    # look at the records and the signal (CI saw that once); at least one trial was stopped
    finished_now = {k for k, t in trials.items() if t["status"] == "FINISHED"}
    assert running and stopped and running <= stopped | finished_now, trials
    assert all(trials[k]["status"] == "KILLED" and trials[k]["reason"] == INTERRUPTED_REASON for k in stopped), trials
    assert all(trials[k]["status"] == "FINISHED" and trials[k]["starts"] == n for k, n in finished.items()), trials
    _, parent, kids = _children(root)  # one parent run: a refused launch makes none
    assert parent.info.status == "KILLED"
    assert all(k.info.status == "KILLED" for k in kids if k.data.tags["unlearn.trial_id"] in stopped)
    meta = load_sweep_meta(root)
    assert optuna.get_all_study_names(meta["optuna_storage"]) == [meta["study_name"]]  # one study
    check_unlocked(root, action="resume")  # free again: the resume may run
    return trials


def _ctrl_c_once_a_trial_runs(root: Path, argv: list[str]) -> tuple[int, dict[str, dict]]:
    """``main(argv)`` in this process (its main thread), which receives SIGINT, as from Ctrl-C, once one of
    its trials runs; its exit code and the records when the signal was sent ({}: it was not)."""
    seen: dict[str, dict] = {}
    ended = threading.Event()

    def interrupt() -> None:
        deadline = time.monotonic() + 400
        while not ended.is_set() and time.monotonic() < deadline:
            if _with_status(records := _records(root), "RUNNING"):  # Tune's fit runs: the sweep's handler is on
                seen.update(records)
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.1)

    t = threading.Thread(target=interrupt, daemon=True)
    t.start()
    try:
        code = main(argv)
    finally:
        ended.set()
        t.join(timeout=5)
    return code, seen


def _check_confirmation(root: Path, client: MlflowClient, done_before: dict[Path, int], tmp_path: Path,
                        capsys) -> None:
    """A confirmation stage (top 2, 6 runs) whose driver was killed once ``done_before`` had finished, then
    resumed: those runs not re-run, the race decided on fresh common seeds, one MLflow child per run with its
    per-question statistics, and ``best_config.yaml`` and ``report`` naming the confirmed best."""
    from sweeps.racing import FIRST_TEST

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
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              filter_string="tags.`unlearn.stage` = 'confirmation'")
    ids = [r.data.tags["unlearn.trial_id"] for r in runs]
    assert len(ids) == len(set(ids)) == doc["runs"]  # one MLflow child per confirmation run, none twice
    for r in runs:  # each with its per-question statistics
        path = client.download_artifacts(r.info.run_id, PER_ITEM_ARTIFACT, str(tmp_path / r.info.run_id))
        per_item = json.loads(Path(path).read_text())["replicates"][0]["per_item"]
        assert len(per_item["forget_truth_ratio"]) == len(per_item["forget_prob"]) > 0
    capsys.readouterr()
    assert main(["report", str(root)]) == 0
    report = capsys.readouterr().out
    assert "the confirmation stage's pick" in report and "confirmed best:" in report


def test_driver_faults_in_one_sweep_lose_and_duplicate_nothing(tmp_path, ray_local, cache_dir, capsys):
    """One sweep through every fault of its driver, each injected for real: a second launch and a resume of
    its directory are refused while the launch runs; SIGTERM stops the launch (exit 143); Ctrl-C (SIGINT)
    stops a resume (exit 130); the next resume is killed (SIGKILL) mid-sweep, right after a trial finished;
    the last resume finishes the sweep: nothing lost, nothing duplicated. One sweep rather than one per
    fault: a driver's start (Python, its Ray cluster, its trials' processes) costs ~20 s on 2 cores, a
    minute on a loaded machine. The launch and the killed resume are processes of their own, each with the
    local Ray cluster it starts (a SIGKILL takes both); the other two resumes run in this process, on the
    session's cluster. Trials run in their own process, as the shipped spaces run them (a run's own resume
    on Ray Train workers: test_worker_killed_mid_trial_restarts_from_checkpoint, tests/sweeps/test_ray_run.py).
    The sweep ends with a confirmation stage (``budget.confirm``), and a third resume is killed inside it."""
    samples = 5  # two at a time: the killed driver still has a trial to run after the one that finished
    space = tiny_space(tmp_path, cache_dir, num_samples=samples, epochs=2, launcher="auto")
    data = yaml.safe_load(space.read_text())
    data["budget"]["confirm"] = {"top": 2, "runs": 6}  # 2 points x 3 fresh seeds before the race's first test
    space.write_text(yaml.safe_dump(data))
    root = tmp_path / "out"
    drivers: list[subprocess.Popen] = []
    try:
        with _step("1: a second launch and a resume are refused while the launch runs"):
            launch = _driver("launch", str(space), "--out", str(root), "--quiet")
            drivers.append(launch)
            _wait_for("lock held by the launch", lambda _: _lock_holder_pid(root) == launch.pid, root, launch)
            # the CLI in this process (its exit code is main's return value): two more Python start-ups beside
            # the launch's cost ~10 s on 2 cores; the lock is a file, the same for any process
            for argv in (["launch", str(space), "--out", str(root), "--quiet"], ["resume", str(root), "--quiet"]):
                capsys.readouterr()
                assert main(argv) == 2, argv
                err = capsys.readouterr().err
                assert "Traceback" not in err and err.count("\n") == 1, err[-3000:]
                assert f"the sweep directory is in use by pid {launch.pid} on " in err and "launch" in err, err

        with _step("2: SIGTERM stops the launch"):
            seen = _wait_for("trial finished while another runs", lambda r: _with_status(r, "FINISHED")
                             and _with_status(r, "RUNNING"), root, launch)
            launch.send_signal(signal.SIGTERM)  # what a cluster scheduler sends
            out, err = launch.communicate(timeout=120)
            trials = _check_stopped(root, launch.returncode, out, err, signal.SIGTERM,
                                    set(_with_status(seen, "RUNNING")), _with_status(seen, "FINISHED"))

        with _step("3: Ctrl-C (SIGINT) stops a resume"):
            # this process is the driver (a real SIGINT to it; no second Ray start-up): exit code 130 is the
            # CLI's return value (`python -m sweeps` exits with it)
            capsys.readouterr()
            code, seen = _ctrl_c_once_a_trial_runs(root, ["resume", str(root), "--quiet"])
            out, err = capsys.readouterr()
            assert seen, f"no trial ran in the resume: the signal was not sent (exit {code})\n{err[-3000:]}"
            trials = _check_stopped(root, code, out, err, signal.SIGINT, set(_with_status(seen, "RUNNING")),
                                    _with_status(trials, "FINISHED"))

        with _step("4: SIGKILL of a resume mid-sweep"):
            resume = _driver("resume", str(root), "--quiet", output=False)
            drivers.append(resume)
            before = _with_status(trials, "FINISHED")
            _wait_for("trial finished in the resume", lambda r: set(_with_status(r, "FINISHED")) - set(before),
                      root, resume)
            os.killpg(resume.pid, signal.SIGKILL)  # the driver and the local cluster it started
            assert resume.wait(timeout=60) == -signal.SIGKILL, "the driver ended before the kill"
            finished = _with_status(_records(root), "FINISHED")
            assert len(finished) < samples, "the kill came after the sweep's last trial"

        with _step("5: SIGKILL of a resume inside the confirmation stage"):
            resume = _driver("resume", str(root), "--quiet", output=False)
            drivers.append(resume)
            deadline = time.monotonic() + 600
            while not list((root / "confirm").glob("*/*/results.json")):
                assert resume.poll() is None, "the resume ended before its confirmation stage ran a run"
                assert time.monotonic() < deadline, "no confirmation run finished within 600 s"
                time.sleep(0.2)
            os.killpg(resume.pid, signal.SIGKILL)
            assert resume.wait(timeout=60) == -signal.SIGKILL, "the driver ended before the kill"
            done_before = {q.parent: q.stat().st_mtime_ns for q in (root / "confirm").glob("*/*/results.json")}
            assert done_before and len(done_before) < 6, "the kill came after the stage's last run"
            records = _records(root)
            assert len(_with_status(records, "FINISHED")) == samples, records  # the search ended before the stage
            assert all(records[k]["starts"] == n for k, n in finished.items()), records  # finished ones not re-run

        with _step("6: a last resume finishes the sweep and its confirmation stage"):
            assert main(["resume", str(root), "--quiet"]) == 0
            trials = _records(root)
            done = set(_with_status(trials, "FINISHED"))
            assert len(done) == samples, trials
            # A trial that started in the crash window (after Tune's last experiment checkpoint) is closed as
            # KILLED with the reason; its sampled point ran again in the resumed sweep (the study holds it once).
            assert all(t["status"] == "KILLED" and t["reason"] == LOST_REASON
                       for k, t in trials.items() if k not in done), trials
            assert all(trials[k]["starts"] == n for k, n in finished.items()), trials  # finished ones not re-run
            client, parent, kids = _children(root)
            assert parent.info.status == "FINISHED"
            search = [k for k in kids if k.data.tags.get("unlearn.stage") != "confirmation"]
            assert sorted(k.data.tags["unlearn.trial_id"] for k in search) == sorted(trials)  # one child per record
            assert all(k.info.status == ("FINISHED" if k.data.tags["unlearn.trial_id"] in done else "KILLED")
                       for k in search)
            meta = load_sweep_meta(root)
            study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
            assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == samples
            assert len(study.trials) == samples

        with _step("6: the confirmation stage lost and duplicated nothing"):
            _check_confirmation(root, client, done_before, tmp_path, capsys)
    finally:
        for p in drivers:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=60)


def test_truncated_results_are_named_by_report_and_resume(tmp_path, ray_local, cache_dir, capsys):
    space = tiny_space(tmp_path, cache_dir, num_samples=1, epochs=1)
    root = tmp_path / "out"
    result = launch_sweep(space, [], SweepSettings(out_dir=str(root), progress=False))
    (trial,) = result.trials
    res = trial.dir / "results.json"
    res.write_text(res.read_text()[:50])  # a crash mid-write
    assert main(["report", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"{trial.trial_id} damaged" in out and "results.json" in out
    again = resume_sweep(root, progress=False)
    assert again.trials[0].status == "DAMAGED" and "results.json" in again.trials[0].reason


def test_mlflow_server_down_mid_sweep_loses_nothing(tmp_path, ray_local, cache_dir):
    (tmp_path / "mlflow").mkdir()
    server = MlflowServer(tmp_path / "mlflow", free_port())
    server.start()
    # two trials: the first runs while the server is down, the second after it came back. ray_train: the
    # second trial's start-up leaves the server time to restart (with launcher local the sweep ended before
    # the restarted server answered, and its buffer could not be replayed)
    path = tiny_space(tmp_path, cache_dir, num_samples=2, epochs=2, launcher="ray_train")
    space = yaml.safe_load(path.read_text())
    space["base"]["epoch_eval"] = True  # metrics at both epochs: some logged while the server is down
    space["budget"]["max_concurrent"] = 1
    path.write_text(yaml.safe_dump(space))
    root = tmp_path / "out"
    events: list[str] = []

    def outage():  # down while the first trial runs, back once it finished; the sweep goes on meanwhile
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and "RUNNING" not in _trial_states(root):
            time.sleep(0.05)
        server.stop()
        events.append("down")
        while time.monotonic() < deadline and "FINISHED" not in _trial_states(root):
            time.sleep(0.2)
        events.append(f"first trial ended: {sorted(_trial_states(root))}")
        server.start()
        server.wait_ready()
        events.append("up")

    try:
        server.wait_ready()
        t = threading.Thread(target=outage, daemon=True)
        t.start()
        # the CLI path of a sweep to a real server (`--mlflow-uri`)
        assert main(["launch", str(path), "--out", str(root), "--mlflow-uri", server.uri, "--quiet"]) == 0
        t.join(timeout=120)
        assert events[0] == "down" and events[-1] == "up", events
        trials = collect_trials(root)
        assert [t.status for t in trials] == ["FINISHED"] * 2
        assert not (root / BUFFER_FILE).exists()  # everything buffered was replayed
        client, parent, kids = _children(root)
        assert load_sweep_meta(root)["tracking_uri"] == server.uri
        assert parent.info.status == "FINISHED"
        assert sorted(k.data.tags["unlearn.trial_id"] for k in kids) == sorted(t.trial_id for t in trials)
        for kid in kids:  # every epoch of every trial, the down time included, once
            assert kid.info.status == "FINISHED"
            history = client.get_metric_history(kid.info.run_id, "train/loss")
            assert sorted(m.step for m in history) == [1, 2]
            trial = next(t for t in trials if t.trial_id == kid.data.tags["unlearn.trial_id"])
            assert kid.data.metrics["forget_quality"] == pytest.approx(trial.metrics["forget_quality"])
            # the per-question statistics too (the first trial's were buffered with their data, then replayed)
            path = client.download_artifacts(kid.info.run_id, PER_ITEM_ARTIFACT, str(tmp_path / trial.trial_id))
            (rep,) = json.loads(Path(path).read_text())["replicates"]
            assert rep["per_item"] == json.loads((trial.run_dir / "results.json").read_text())["per_item"] != {}
    finally:
        server.stop()


def test_sigterm_during_prepare_is_one_line_and_leaves_nothing(tmp_path, ray_local):
    """SIGTERM while the launch prepares its models (before Tune's fit, with Ray started): the one-line
    message and exit 143 a SIGTERM during the sweep gets, no native stack dump, and nothing that blocks
    launching into the same --out again. The launch attaches to the session's cluster (``--address``, as on a
    shared cluster): no trial runs before the signal, and a local cluster's start-up (~8 s) is spared."""
    import ray

    path = tiny_space(tmp_path, tmp_path / "cache", num_samples=1, epochs=1, launcher="auto")
    space = yaml.safe_load(path.read_text())
    space["base"]["prepare"]["epochs"] = 200  # a fresh cache: prepare is still training when the signal comes
    path.write_text(yaml.safe_dump(space))
    root = tmp_path / "out"
    address = ray.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "launch", str(path), "--out", str(root),
                             "--address", address], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (root / "sweep.json").exists() and time.monotonic() < deadline:  # Ray started; prepare next
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert not list((tmp_path / "cache").glob("prepared/*/prepared.json")), out[-2000:]  # it came during prepare
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert err.strip().splitlines()[-1] == ("sweep interrupted (SIGTERM) before its first trial; nothing was kept: "
                                            "launch it again (the same --out is accepted)"), err[-3000:]
    assert "SIGTERM received" not in err and "Traceback" not in err, err[-3000:]
    assert [p.name for p in root.iterdir()] == [".sweep.lock"]  # as a failed launch leaves it


def test_failed_launch_undone_then_all_trials_fail_then_missing_study(tmp_path, ray_local, cache_dir, capsys):
    """A launch that fails before its first trial leaves nothing that blocks the corrected one; a sweep whose
    trials all fail exits non-zero, says so and logs nothing as best; a resume without its optuna.db is
    refused up front with what can be done."""
    root = tmp_path / "out"
    (tmp_path / "a_file").write_text("not a directory")
    path = tiny_space(tmp_path, cache_dir, num_samples=1, epochs=2, launcher="auto")
    space = yaml.safe_load(path.read_text())
    space["base"]["cache_dir"] = str(tmp_path / "a_file" / "cache")  # prepare fails, after sweep.json is written
    path.write_text(yaml.safe_dump(space))
    assert main(["launch", str(path), "--out", str(root), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "a_file" in err, err
    assert [p.name for p in root.iterdir()] == [".sweep.lock"]  # nothing that blocks a relaunch

    space["base"]["cache_dir"] = str(cache_dir)
    space["base"]["optim"]["lr"] = 1e9  # every trial diverges
    path.write_text(yaml.safe_dump(space))
    assert main(["launch", str(path), "--out", str(root), "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "error: no trial finished (1 trial(s), 1 failed" in captured.err and "nothing was logged as best" in captured.err
    assert "best_config.yaml" not in captured.out and not (root / "best_config.yaml").exists()
    client, parent, _ = _children(root)
    assert parent.info.status == "FAILED"
    assert "best_config.yaml" not in {a.path.rsplit("/", 1)[-1] for a in client.list_artifacts(parent.info.run_id, "sweep")}
    records = {p: p.read_text() for p in (root / "trials").glob("*/trial.json")}

    (root / "optuna.db").unlink()
    start = time.monotonic()
    assert main(["resume", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert time.monotonic() - start < 20
    assert "its Optuna study is gone" in err and "optuna.db is missing" in err and "unlearn-sweep launch" in err, err
    assert {p: p.read_text() for p in (root / "trials").glob("*/trial.json")} == records  # nothing touched


def test_export_killed_mid_copy_leaves_no_model_that_looks_whole(tmp_path):
    """export-best --model copies to a temporary sibling and renames it: SIGKILL mid-copy (the copy is held
    on a FIFO, so the kill surely lands during it) leaves no model directory; the next export completes."""
    src, dest = tmp_path / "model", tmp_path / "best_model"
    src.mkdir()
    (src / "model.safetensors").write_bytes(os.urandom(4 << 20))
    os.mkfifo(src / "tokenizer.json")  # the copy blocks here until it is killed
    code = ("import sys; from pathlib import Path; from sweeps.report.export import _copy_dir_atomic; "
            "_copy_dir_atomic(Path(sys.argv[1]), Path(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", code, str(src), str(dest)], cwd=REPO)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".best_model.partial-*/*")) and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert not dest.exists()  # no truncated model.safetensors where a model is expected
    assert list(tmp_path.glob(".best_model.partial-*"))
    (src / "tokenizer.json").unlink()
    (src / "tokenizer.json").write_text("{}")
    from sweeps.report.export import _copy_dir_atomic

    _copy_dir_atomic(src, dest)
    assert (dest / "model.safetensors").read_bytes() == (src / "model.safetensors").read_bytes()
    assert not list(tmp_path.glob(".best_model.*"))  # the killed export's partial copy is gone too
