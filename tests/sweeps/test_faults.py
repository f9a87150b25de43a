"""Real faults injected into real processes: nothing lost, nothing duplicated, every error clear."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from sweeps.cli import main
from sweeps.report import collect_trials
from sweeps.fit import INTERRUPTED_REASON, LOST_REASON
from sweeps.sweep import SweepSettings, launch_sweep, load_sweep_meta, resume_sweep
from sweeps.tracking import BUFFER_FILE, PER_ITEM_ARTIFACT
from sweeps.ray_run import run_unlearning
from tests.conftest import REPO
from tests.helpers import MlflowServer, free_port, tiny_space
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


def _pids(pattern: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_worker_killed_mid_trial_restarts_from_checkpoint(tmp_path, ray_local, cache_dir):
    space = tiny_space(tmp_path, cache_dir, num_samples=1, epochs=4, launcher="ray_train")  # a worker to kill
    data = yaml.safe_load(space.read_text())
    data["base"]["epoch_eval"] = True  # an evaluation per epoch leaves time to inject the fault mid-run
    space.write_text(yaml.safe_dump(data))
    root = tmp_path / "out"
    killed: list[int] = []

    def kill_after_a_registered_checkpoint():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not killed:
            if list((root / "ray" / "train").glob("trial-*/epoch_0002")):  # epoch 1 surely registered
                pids = _pids("ray::RayTrainWorker")
                if pids:
                    os.kill(pids[0], signal.SIGKILL)
                    killed.append(pids[0])
            time.sleep(0.05)

    t = threading.Thread(target=kill_after_a_registered_checkpoint, daemon=True)
    t.start()
    result = launch_sweep(space, [], SweepSettings(out_dir=str(root), progress=False))
    t.join(timeout=5)
    assert killed, "the fault was not injected"
    (trial,) = result.trials
    assert trial.status == "FINISHED"
    client, _, kids = _children(root)
    assert len(kids) == 1  # one MLflow run, not two
    history = client.get_metric_history(kids[0].info.run_id, "train/resumed_from_epoch")
    assert history and history[0].value >= 1.0  # the restart is on record
    # final metrics equal an uninterrupted run of the same resolved config (same seed); run in this process
    # (launcher local: the same run bit for bit, tests/sweeps/test_ray_run.py) to spare a Ray Train start-up
    cfg = run_config_from_dict(json.loads((trial.dir / "config.json").read_text()))
    cfg = replace(cfg, scaling=replace(cfg.scaling, launcher="local"))
    clean = run_unlearning(cfg, tmp_path / "clean", log=lambda s: None)
    for key in ("train/loss", "forget_truth_ratio", "forget_quality"):
        assert trial.metrics[key] == pytest.approx(clean.metrics[key], rel=1e-5, abs=1e-8)


@pytest.fixture(scope="module")
def failing_sweep(tmp_path_factory, ray_local, cache_dir):
    """One sweep, three trials: one diverges (absurd learning rate), one runs out of memory (its worker may
    allocate 2 MB: loading the model fails for real), one is fine."""
    tmp_path = tmp_path_factory.mktemp("failing")
    # ray_train: the memory cap is a Ray Train worker's
    path = tiny_space(tmp_path, cache_dir, num_samples=3, epochs=2, launcher="ray_train")
    space = yaml.safe_load(path.read_text())
    space["parameters"]["optim.lr"] = {"distribution": "loguniform", "low": 1e-3, "high": 1e9}
    space["parameters"]["scaling.memory_limit_gb"] = {"distribution": "categorical", "choices": [0.002, 4.0]}
    space["initial_points"] = [
        {"method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 1e9, "scaling.memory_limit_gb": 4.0},
        {"method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 3e-3, "scaling.memory_limit_gb": 0.002},
        {"method.beta1": 5.0, "method.beta2": 0.1, "optim.lr": 3e-3, "scaling.memory_limit_gb": 4.0}]
    path.write_text(yaml.safe_dump(space))
    root = tmp_path / "out"
    result = launch_sweep(path, [], SweepSettings(out_dir=str(root), progress=False))
    _, _, kids = _children(root)
    meta = load_sweep_meta(root)
    study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
    by_lr_cap = {(t.params["optim.lr"], t.params["scaling.memory_limit_gb"]): t for t in result.trials}
    return result, by_lr_cap, {k.data.tags["unlearn.trial_id"]: k for k in kids}, study


def test_diverging_trial_is_failed_and_the_sweep_goes_on(failing_sweep):
    result, trials, kids, study = failing_sweep
    diverged = trials[(1e9, 4.0)]
    assert diverged.status == "FAILED"
    assert "loss is" in diverged.reason and "optim.lr" in diverged.reason
    assert kids[diverged.trial_id].info.status == "FAILED"
    assert "loss is" in kids[diverged.trial_id].data.tags["unlearn.failure_reason"]
    assert trials[(3e-3, 4.0)].status == "FINISHED"  # the sweep went on
    assert sorted(t.state.name for t in study.trials) == ["COMPLETE", "FAIL", "FAIL"]


def test_out_of_memory_trial_says_so_and_what_to_change(failing_sweep):
    result, trials, kids, study = failing_sweep
    oom = trials[(3e-3, 0.002)]
    assert oom.status == "FAILED"
    assert "out of memory" in oom.reason
    assert "optim.micro_batch_size" in oom.reason and "scaling.memory_limit_gb (now 0.002)" in oom.reason
    assert kids[oom.trial_id].info.status == "FAILED"
    assert "out of memory" in kids[oom.trial_id].data.tags["unlearn.failure_reason"]
    assert trials[(3e-3, 4.0)].status == "FINISHED"  # the sweep went on


def _wait_for_a_finished_trial(root: Path, timeout_s: float = 400) -> list[Path]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [p for p in (root / "trials").glob("*/trial.json")
                if json.loads(p.read_text() or "{}").get("status") == "FINISHED"]
        if done:
            return done
        time.sleep(0.2)
    raise AssertionError("no trial finished in time")


def test_ctrl_c_stops_the_sweep_then_resume_finishes_it(tmp_path, ray_local, cache_dir):
    space = tiny_space(tmp_path, cache_dir, num_samples=3, epochs=2, launcher="auto")
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "launch", str(space), "--out", str(root), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        done = _wait_for_a_finished_trial(root)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends the driver
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    assert f"continue it with: unlearn-sweep resume {root}" in err
    assert "trials:" in out  # the table of what ran so far
    trials = {p.parent.name: json.loads(p.read_text()) for p in (root / "trials").glob("*/trial.json")}
    assert {p.parent.name for p in done} <= {k for k, t in trials.items() if t["status"] == "FINISHED"}
    stopped = {k for k, t in trials.items() if t["status"] != "FINISHED"}
    assert stopped, trials  # the trial started when the first finished was still running
    assert all(trials[k]["status"] == "KILLED" and trials[k]["reason"] == INTERRUPTED_REASON for k in stopped)
    _, parent, kids = _children(root)
    assert parent.info.status == "KILLED"
    assert all(k.info.status == "KILLED" for k in kids if k.data.tags["unlearn.trial_id"] in stopped)
    starts = {k: t["starts"] for k, t in trials.items()}

    result = resume_sweep(root, progress=False)
    assert len(result.trials) == 3 and all(t.status == "FINISHED" for t in result.trials)
    again = {p.parent.name: json.loads(p.read_text()) for p in (root / "trials").glob("*/trial.json")}
    assert all(again[k]["starts"] == starts[k] for k in trials if k not in stopped)  # finished ones not re-run
    _, parent, kids = _children(root)
    assert parent.info.status == "FINISHED" and all(k.info.status == "FINISHED" for k in kids) and len(kids) == 3
    meta = load_sweep_meta(root)
    study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 3


def test_driver_killed_mid_sweep_then_resume(tmp_path, cache_dir):
    # trials in their own process, as the shipped spaces run them (a run's own resume on Ray Train workers:
    # tests/sweeps/test_ray_run.py)
    space = tiny_space(tmp_path, cache_dir, num_samples=2, epochs=2, launcher="auto")
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "launch", str(space), "--out", str(root), "--quiet"],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        done = _wait_for_a_finished_trial(root)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local cluster it started
        proc.wait(timeout=60)
    finished_before = {p.parent.name for p in done}
    starts_before = {p.parent.name: json.loads(p.read_text())["starts"] for p in done}
    out = subprocess.run([sys.executable, "-m", "sweeps", "resume", str(root), "--quiet"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    trials = {p.parent.name: json.loads(p.read_text()) for p in (root / "trials").glob("*/trial.json")}
    finished = {k for k, t in trials.items() if t["status"] == "FINISHED"}
    assert len(finished) == 2
    # A trial that started in the crash window (after Tune's last experiment checkpoint) is closed as
    # KILLED with the reason; its sampled point ran again in the resumed sweep (the study holds it once).
    assert all(t["status"] == "KILLED" and t["reason"] == LOST_REASON
               for k, t in trials.items() if k not in finished)
    assert all(trials[t]["starts"] == starts_before[t] for t in finished_before)  # not re-run
    _, parent, kids = _children(root)
    assert parent.info.status == "FINISHED"
    assert {k.data.tags["unlearn.trial_id"] for k in kids} == set(trials)  # one child per trial record
    assert all(k.info.status == ("FINISHED" if k.data.tags["unlearn.trial_id"] in finished else "KILLED")
               for k in kids)
    meta = load_sweep_meta(root)
    study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
    assert len([t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]) == 2
    assert len(study.trials) == 2


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


def _trial_states(root: Path) -> list[str]:
    states = []
    for p in (root / "trials").glob("*/trial.json"):
        try:
            states.append(json.loads(p.read_text()).get("status"))
        except json.JSONDecodeError:
            pass  # being replaced right now
    return states


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


def _lock_holder_pid(root: Path) -> int | None:
    try:
        return json.loads((root / ".sweep.lock").read_text() or "{}").get("pid")
    except (OSError, ValueError):
        return None


def test_second_driver_is_refused_and_sigterm_stops_gracefully(tmp_path, cache_dir):
    """Two drivers, one directory: while a real launch runs, a second launch and a resume of its directory
    are refused, naming it; then SIGTERM (what a cluster scheduler sends) stops it as Ctrl-C does."""
    path = tiny_space(tmp_path, cache_dir, num_samples=2, epochs=4, launcher="auto")
    space = yaml.safe_load(path.read_text())
    space["base"]["epoch_eval"] = True  # trials long enough to be running when the signal comes
    path.write_text(yaml.safe_dump(space))
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cli = [sys.executable, "-m", "sweeps"]
    proc = subprocess.Popen([*cli, "launch", str(path), "--out", str(root), "--quiet"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while _lock_holder_pid(root) != proc.pid and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            time.sleep(0.1)
        second = [subprocess.Popen([*cli, *argv], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True) for argv in (["launch", str(path), "--out", str(root), "--quiet"],
                                                           ["resume", str(root), "--quiet"])]
        for p in second:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 2, err[-3000:]
            assert "Traceback" not in err and err.count("\n") == 1, err[-3000:]
            assert f"the sweep directory is in use by pid {proc.pid} on " in err and "launch" in err, err
        while "RUNNING" not in _trial_states(root) and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert f"interrupted (SIGTERM); continue it with: unlearn-sweep resume {root}" in err
    assert "trials:" in out
    trials = {p.parent.name: json.loads(p.read_text()) for p in (root / "trials").glob("*/trial.json")}
    stopped = {k for k, t in trials.items() if t["status"] != "FINISHED"}
    assert stopped and all(trials[k]["status"] == "KILLED" and trials[k]["reason"] == INTERRUPTED_REASON
                           for k in stopped), trials
    _, parent, kids = _children(root)  # one parent run: the refused launch made none
    assert parent.info.status == "KILLED"
    assert all(k.info.status == "KILLED" for k in kids if k.data.tags["unlearn.trial_id"] in stopped)
    meta = load_sweep_meta(root)
    assert len(optuna.get_all_study_names(meta["optuna_storage"])) == 1  # one study
    from sweeps.lock import check_unlocked

    check_unlocked(root, action="resume")  # free again: the resume may run


def test_sigterm_during_prepare_is_one_line_and_leaves_nothing(tmp_path):
    """SIGTERM while the launch prepares its models (before Tune's fit, with Ray started): the one-line
    message and exit 143 a SIGTERM during the sweep gets, no native stack dump, and nothing that blocks
    launching into the same --out again."""
    path = tiny_space(tmp_path, tmp_path / "cache", num_samples=1, epochs=1, launcher="auto")
    space = yaml.safe_load(path.read_text())
    space["base"]["prepare"]["epochs"] = 200  # a fresh cache: prepare is still training when the signal comes
    path.write_text(yaml.safe_dump(space))
    root = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    proc = subprocess.Popen([sys.executable, "-m", "sweeps", "launch", str(path), "--out", str(root)], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
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
