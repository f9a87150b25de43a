"""MLflow tracking of sweeps: a real sqlite store, a real ``mlflow server`` on 127.0.0.1, real Tune trials."""

from __future__ import annotations

import json
import os
import pickle
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from ray.tune.experiment import Trial

from sweeps.tracking import (
    BUFFER_FILE,
    PER_ITEM_ARTIFACT,
    TAG_DROPPED,
    TAG_FAILURE,
    TAG_PARENT,
    TAG_RESTARTS,
    MLflowTrialCallback,
    OpBuffer,
    SweepTracker,
    check_tracking_uri,
    default_tracking_uri,
    failure_reason,
    result_metrics,
    sync_buffer,
)
from tests.helpers import MlflowServer, free_port
from unlearn.errors import ConfigError


# --------------------------------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """Started (not yet waited for) at module start, so its slow start overlaps the sqlite tests."""
    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module", autouse=True)
def _prestart_server(request: pytest.FixtureRequest) -> None:
    selected = [i for i in request.session.items if i.module is request.module]
    if any("mlflow_server" in getattr(i, "fixturenames", ()) for i in selected):
        request.getfixturevalue("mlflow_server")


def runs_by_name(tracker: SweepTracker) -> dict[str, Run]:
    client = MlflowClient(tracking_uri=tracker.tracking_uri)
    runs = client.search_runs([tracker.experiment_id()])
    names = [r.info.run_name for r in runs]
    assert len(names) == len(set(names)), f"duplicate runs: {names}"
    return {r.info.run_name: r for r in runs}


def steps(tracker: SweepTracker, run_id: str, key: str) -> list[tuple[int, float]]:
    history = MlflowClient(tracking_uri=tracker.tracking_uri).get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in history)


def artifact_dict(tracker: SweepTracker, run_id: str, name: str) -> dict:
    """A JSON artifact of a run, read back through the store."""
    with tempfile.TemporaryDirectory() as tmp:
        path = MlflowClient(tracking_uri=tracker.tracking_uri).download_artifacts(run_id, name, tmp)
        return json.loads(Path(path).read_text())


# --------------------------------------------------------------------------------------------------
# URIs
# --------------------------------------------------------------------------------------------------
def test_default_tracking_uri_is_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = default_tracking_uri(Path("rel/sweep"))
    assert uri == f"sqlite:///{tmp_path.resolve()}/rel/sweep/mlflow.db"
    check_tracking_uri(uri)  # a directory that does not exist yet but can be created


def test_check_tracking_uri_rejects_bad_uris(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="valid: sqlite:////"):
        check_tracking_uri("file:///tmp/mlruns")
    with pytest.raises(ConfigError, match="relative sqlite path"):
        check_tracking_uri("sqlite:///mlflow.db")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(ConfigError, match="cannot be created"):
        check_tracking_uri(f"sqlite:///{blocker}/sub/mlflow.db")


def test_check_tracking_uri_unused_port_fails_fast() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(ConfigError, match=f"{uri}.*not reachable"):
        check_tracking_uri(uri)
    assert time.monotonic() - start < 5


# --------------------------------------------------------------------------------------------------
# a sqlite store
# --------------------------------------------------------------------------------------------------
def test_parent_and_children_form_a_tree(tracker: SweepTracker) -> None:
    parent = tracker.start_parent("sweep-a", {"method": {"name": "satimp", "beta1": [0.1, 5.0]}},
                                  {"unlearn.space": "satimp.yaml"}, run_name="satimp-sweep")
    ok = tracker.trial_run("trial_00000", {"method": {"beta1": 1.5}, "optim.lr": 1e-4})
    for epoch, loss in [(1, 2.0), (2, 1.5), (3, 1.25)]:
        tracker.log_metrics("trial_00000", {"train/loss": loss, "forget/quality": loss / 10}, step=epoch)
    tracker.finish_trial("trial_00000", "FINISHED", final_metrics={"model_utility": 0.5})
    bad = tracker.trial_run("trial_00001", {"method": {"beta1": 3.0}})
    tracker.log_metrics("trial_00001", {"train/loss": 9.0}, step=1)
    tracker.finish_trial("trial_00001", "FAILED", reason="ValueError: loss is nan\n" + "x" * 5000)
    tracker.finish_parent()

    runs = runs_by_name(tracker)
    assert set(runs) == {"satimp-sweep", "trial_00000", "trial_00001"}
    top = runs["satimp-sweep"]
    assert top.info.run_id == parent and top.info.status == "FINISHED"
    assert top.data.params == {"method.name": "satimp", "method.beta1": "[0.1, 5.0]"}
    assert top.data.tags["unlearn.sweep_id"] == "sweep-a" and top.data.tags["unlearn.version"]
    assert top.data.tags["unlearn.space"] == "satimp.yaml"

    good, failed = runs["trial_00000"], runs["trial_00001"]
    assert good.info.run_id == ok and failed.info.run_id == bad
    assert good.data.tags[TAG_PARENT] == parent and failed.data.tags[TAG_PARENT] == parent
    assert good.data.params == {"method.beta1": "1.5", "optim.lr": "0.0001"}
    assert steps(tracker, ok, "train/loss") == [(1, 2.0), (2, 1.5), (3, 1.25)]
    assert good.data.metrics["model_utility"] == 0.5 and good.info.status == "FINISHED"
    assert failed.info.status == "FAILED"
    assert failed.data.tags[TAG_FAILURE].startswith("ValueError: loss is nan")
    assert len(failed.data.tags[TAG_FAILURE]) <= 2000


def test_the_experiment_opens_on_its_runs_in_mlflows_ui(tracker: SweepTracker) -> None:
    """MLflow 3's UI shows an experiment without ``mlflow.experimentKind`` as a GenAI one (traces)."""
    tracker.start_parent("sweep-kind", {}, {})
    stored = MlflowClient(tracking_uri=tracker.tracking_uri).get_experiment(tracker.experiment_id())
    assert stored.tags["mlflow.experimentKind"] == "custom_model_development"


def test_replicates_are_runs_nested_in_their_trial(tracker: SweepTracker) -> None:
    tracker.start_parent("sweep-rep", {}, {})
    tracker.trial_run("t1", {"method": {"beta1": 5.0}})
    for index, seed, fq in ((0, 11, 0.5), (1, 22, 0.7), (1, 22, 0.7)):  # the last: a replay, no new run
        tracker.replicate_run("t1", index, seed, {"forget_quality": fq, "bad": float("nan")})
    tracker.finish_trial("t1", "FINISHED", final_metrics={"record/forget_quality": 0.6})
    runs = runs_by_name(tracker)
    child = runs["t1"]
    assert child.data.metrics["record/forget_quality"] == 0.6
    for index, seed, fq in ((0, 11, 0.5), (1, 22, 0.7)):
        rep = runs[f"t1-r{index}"]
        assert rep.data.tags[TAG_PARENT] == child.info.run_id and rep.data.tags["unlearn.role"] == "replicate"
        assert rep.data.params["seed"] == str(seed) and rep.data.metrics["forget_quality"] == fq
        assert rep.info.status == "FINISHED" and "unlearn.nonfinite/bad" in rep.data.tags


def test_resume_reuses_parent_and_trial_runs(tracker: SweepTracker, sweep_dir: Path) -> None:
    parent = tracker.start_parent("sweep-b", {"a": 1}, {})
    child = tracker.trial_run("t0", {"x": 1})
    tracker.finish_trial("t0", "FAILED", reason="driver died")
    tracker.finish_parent("FAILED")

    again = SweepTracker(tracker.tracking_uri, tracker.experiment_name, sweep_dir)  # a restarted driver
    assert again.start_parent("sweep-b", {"a": 1, "b": 2}, {}) == parent
    assert again.trial_run("t0", {"x": 1}) == child
    assert again.trial_run("t0", {"x": 1}) == child  # the trial restarted once more
    again.log_metrics("t0", {"loss": 1.0}, step=1)

    runs = runs_by_name(tracker)
    assert len(runs) == 2
    top, trial = runs["sweep-b"], runs["t0"]
    assert top.info.status == "RUNNING" and top.data.tags["unlearn.resumes"] == "1"
    assert top.data.params == {"a": "1", "b": "2"}
    assert trial.info.status == "RUNNING" and trial.data.tags[TAG_RESTARTS] == "2"
    assert TAG_FAILURE not in trial.data.tags
    assert trial.data.tags["unlearn.previous_failure_reason"] == "driver died"


def test_secrets_are_never_logged(tracker: SweepTracker) -> None:
    secrets = {"hf_token": "tok-123", "db": {"Password": "pw-456"}, "API_KEY": "key-789"}
    tracker.start_parent("sweep-c", {"lr": 0.1, **secrets}, {"my_secret": "sec-000", "owner": "me"})
    tracker.trial_run("t0", {"seed": 1, **secrets})
    tracker.tag_trial("t0", {"wandb_api_key": "key-000", "note": "ok"})

    values = {"tok-123", "pw-456", "key-789", "sec-000", "key-000"}
    for run in runs_by_name(tracker).values():
        logged = {**run.data.params, **run.data.tags}
        assert not values & set(logged.values()), logged
        assert not any("token" in k.lower() or "password" in k.lower() for k in run.data.params)
    runs = runs_by_name(tracker)
    assert runs["sweep-c"].data.tags[TAG_DROPPED] == "API_KEY, db.Password, hf_token, my_secret"
    assert runs["sweep-c"].data.params == {"lr": "0.1"} and runs["sweep-c"].data.tags["owner"] == "me"
    assert runs["t0"].data.tags["note"] == "ok" and "wandb_api_key" not in runs["t0"].data.tags


def test_non_numeric_and_non_finite_metrics(tracker: SweepTracker) -> None:
    tracker.start_parent("sweep-d", {}, {})
    run = tracker.trial_run("t0", {})
    tracker.log_metrics("t0", {"loss": float("nan"), "acc": 0.5, "name": "x", "flag": True}, step=4)
    tags = runs_by_name(tracker)["t0"].data.tags
    assert steps(tracker, run, "acc") == [(4, 0.5)]
    assert tags["unlearn.nonfinite/loss"] == "nan at step 4"
    assert set(runs_by_name(tracker)["t0"].data.metrics) == {"acc"}


def test_sync_buffer_replays_in_order(tracker: SweepTracker, sweep_dir: Path) -> None:
    tracker.start_parent("sweep-e", {}, {})
    buffer = OpBuffer(sweep_dir / BUFFER_FILE)
    for step in (1, 2):  # what a driver that lost its server would have written
        buffer.append({"op": "log_metrics", "experiment": tracker.experiment_name, "sweep_id": "sweep-e",
                       "kwargs": {"trial_id": "t9", "metrics": {"loss": 1.0 / step}, "nonfinite": {},
                                  "step": step, "timestamp_ms": 1_000 * step}})
    assert sync_buffer(sweep_dir, tracker.tracking_uri) == 2
    assert not buffer.path.exists()
    run = runs_by_name(tracker)["t9"]
    assert run.data.tags[TAG_PARENT] == tracker.parent_run_id
    assert steps(tracker, run.info.run_id, "loss") == [(1, 1.0), (2, 0.5)]


# --------------------------------------------------------------------------------------------------
# Ray Tune callback, driven with real Tune trials
# --------------------------------------------------------------------------------------------------
def tune_result(trial: Trial, epoch: int, loss: float, done: bool = False) -> dict:
    return {"loss": loss, "epoch": epoch, "train": {"ce": loss * 2}, "done": done,
            "training_iteration": epoch, "trial_id": trial.trial_id, "timestamp": 1_795_809_021,
            "time_this_iter_s": 0.1, "time_total_s": 0.1 * epoch, "pid": 1, "hostname": "vm",
            "node_ip": "127.0.0.1", "date": "2026-11-27_19-50-21", "iterations_since_restore": epoch,
            "checkpoint_dir_name": None, "config": trial.config}


def test_result_metrics_drop_tune_bookkeeping() -> None:
    trial = Trial("f", config={}, trial_id="x_00000", stub=True)
    assert result_metrics(tune_result(trial, 2, 0.5)) == {"loss": 0.5, "train/ce": 1.0}


def test_callback_records_trials(tracker: SweepTracker) -> None:
    tracker.start_parent("sweep-f", {}, {})
    callback = pickle.loads(pickle.dumps(MLflowTrialCallback(tracker, max_steps=3)))  # Tune pickles it
    callback.setup()
    trials = [Trial("f", config={"method": {"beta1": b}}, trial_id=f"abc_0000{i}", stub=True)
              for i, b in enumerate((1.0, 2.0, 3.0, 4.0))]
    full, early, broken, pending = trials
    for trial in (full, early, broken):
        callback.on_trial_start(0, trials, trial)
    for epoch in (1, 2, 3):  # ASHA at max_t stops the trial on its last epoch
        callback.on_trial_result(epoch, trials, full, tune_result(full, epoch, 1.0 / epoch, done=epoch == 3))
    callback.on_trial_complete(3, trials, full)
    callback.on_trial_result(1, trials, early, tune_result(early, 1, 5.0, done=True))  # cut by ASHA
    callback.on_trial_complete(3, trials, early)
    callback.on_trial_error(3, trials, broken)
    callback.on_trial_complete(3, trials, pending)  # removed before it ever started: no run
    callback.on_experiment_end(trials)

    runs = runs_by_name(tracker)
    assert set(runs) == {"sweep-f", "abc_00000", "abc_00001", "abc_00002"}
    assert runs["abc_00000"].info.status == "FINISHED"
    # no record.json (the trial function is not a sweep's): no per-question statistics to log
    assert MlflowClient(tracking_uri=tracker.tracking_uri).list_artifacts(runs["abc_00000"].info.run_id) == []
    assert runs["abc_00000"].data.params == {"method.beta1": "1.0"}
    assert steps(tracker, runs["abc_00000"].info.run_id, "train/ce") == [(1, 2.0), (2, 1.0), (3, 2 / 3)]
    assert runs["abc_00001"].info.status == "KILLED"
    assert "step 1 of 3" in runs["abc_00001"].data.tags[TAG_FAILURE]
    assert runs["abc_00002"].info.status == "FAILED" and runs["abc_00002"].data.tags[TAG_FAILURE]


def test_callback_logs_the_record_as_final_metrics_and_replicates_as_nested_runs(tracker: SweepTracker,
                                                                                tmp_path: Path) -> None:
    from sweeps.layout import RECORD_FILE, replicate_dir, trial_dir, write_json_atomic
    from sweeps.record import Bound, make_record, replicate_result
    from unlearn.train.run import RESULTS_FILE

    tracker.start_parent("sweep-r", {}, {})
    callback = pickle.loads(pickle.dumps(MLflowTrialCallback(tracker, max_steps=2, sweep_dir=tmp_path)))
    callback.setup()
    trial = Trial("f", config={"method": {"beta1": 1.0}}, trial_id="rec_00000", stub=True)
    callback.on_trial_start(0, [trial], trial)
    finals = [{"forget_quality": 0.2, "model_utility": 0.4}, {"forget_quality": 0.4, "model_utility": 0.4}]
    for i, f in enumerate(finals):
        callback.on_trial_result(i + 1, [trial], trial, {**replicate_result(i, 100 + i, f), "training_iteration": i + 1})
    # what the trial's process leaves behind: each replicate's results.json (with its per-question
    # statistics), then record.json naming the replicates' directories
    runs_dirs = [replicate_dir(trial_dir(tmp_path, "rec_00000"), i, 2) for i in (0, 1)]
    items = [{"forget_truth_ratio": [0.5 + i, 1.5], "forget_prob": [0.25, 0.125 * i]} for i in (0, 1)]
    for run, f, item in zip(runs_dirs, finals, items):
        write_json_atomic(run / RESULTS_FILE, {"config": {}, "final": f, "epochs": [], "per_item": item})
    record = make_record([{"index": i, "seed": 100 + i, "dir": str(runs_dirs[i]), "final": f, "best_epoch": None}
                          for i, f in enumerate(finals)], "mean", [Bound("model_utility", "min", 0.5, "x")],
                         ["forget_quality"])
    write_json_atomic(trial_dir(tmp_path, "rec_00000") / RECORD_FILE, record.to_dict())
    callback.on_trial_result(3, [trial], trial, {**record.to_result(), "training_iteration": 3})
    callback.on_trial_complete(3, [trial], trial)
    callback.on_experiment_end([trial])

    runs = runs_by_name(tracker)
    child = runs["rec_00000"]
    assert child.data.metrics["record/forget_quality"] == pytest.approx(0.3)
    assert "forget_quality" not in child.data.metrics  # no per-epoch history here: the record is its own key
    assert child.data.tags["unlearn.feasible"] == "false" and child.info.status == "FINISHED"
    assert {runs[f"rec_00000-r{i}"].data.metrics["forget_quality"] for i in (0, 1)} == {0.2, 0.4}
    assert artifact_dict(tracker, child.info.run_id, PER_ITEM_ARTIFACT) == {
        "trial_id": "rec_00000",
        "replicates": [{"index": i, "seed": 100 + i, "per_item": items[i]} for i in (0, 1)]}


def test_failure_reason_puts_the_exception_first() -> None:
    text = ("Failure # 1 (occurred at 2026-11-27_19-50-26)\n"
            "\x1b[36mray::ImplicitFunc.train()\x1b[39m (pid=15593, ip=192.0.2.2)\n"
            '  File "train.py", line 3, in f\n    raise ValueError("boom x=3")\n'
            "    ^^^^^^^^^^^^^^^^^^^^^^^^^^\n"
            "ValueError: boom x=3\n")  # the error.txt Ray writes for a failed trial
    reason = failure_reason(text)
    assert reason.splitlines()[0] == "ValueError: boom x=3"
    assert "Failure # 1" in reason and "ray::ImplicitFunc.train() (pid" in reason
    assert "^^^" not in reason and "\x1b" not in reason
    assert failure_reason("") == "unknown error"


# --------------------------------------------------------------------------------------------------
# a real tracking server, killed and restarted
# --------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_server_receives_parent_and_child(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    mlflow_server.wait_ready()
    check_tracking_uri(mlflow_server.uri)
    tracker = SweepTracker(mlflow_server.uri, "server-tree", tmp_path)
    parent = tracker.start_parent("sweep-h", {"lr": 0.1}, {})
    child = tracker.trial_run("t0", {"seed": 3})
    tracker.log_metrics("t0", {"loss": 0.25}, step=1)
    tracker.log_parent_dict({"best": {"lr": 0.1}}, "sweep/best_config.yaml")

    runs = runs_by_name(tracker)
    assert runs["t0"].info.run_id == child and runs["t0"].data.tags[TAG_PARENT] == parent
    assert runs["t0"].data.params == {"seed": "3"} and runs["t0"].data.metrics == {"loss": 0.25}
    client = MlflowClient(tracking_uri=mlflow_server.uri)
    assert [f.path for f in client.list_artifacts(parent, "sweep")] == ["sweep/best_config.yaml"]


@pytest.mark.slow
def test_buffer_while_server_is_down(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    mlflow_server.wait_ready()
    tracker = SweepTracker(mlflow_server.uri, "server-buffer", tmp_path)
    tracker.start_parent("sweep-i", {}, {})
    run = tracker.trial_run("t0", {"seed": 1})
    tracker.log_metrics("t0", {"loss": 1.0}, step=1)

    mlflow_server.stop()
    start = time.monotonic()
    # an artifact first: its upload failing on the dead server is an outage too (buffered, with its data)
    items = {"replicates": [{"index": 0, "seed": 1, "per_item": {"forget_prob": [0.5, 0.25]}}]}
    assert tracker.log_trial_dict("t0", items, PER_ITEM_ARTIFACT) is None  # buffered, not raised
    assert tracker.log_metrics("t0", {"loss": 0.5}, step=2) is None
    tracker.log_metrics("t0", {"loss": 0.25}, step=3)
    tracker.finish_trial("t0", "FINISHED")
    assert time.monotonic() - start < 5
    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ  # set only for the tracker's own calls
    ops = [r["op"] for r in OpBuffer(tmp_path / BUFFER_FILE).read()]
    assert ops == ["log_trial_dict", "log_metrics", "log_metrics", "finish_trial"]

    mlflow_server.start()
    mlflow_server.wait_ready()
    assert tracker.flush() == 4
    assert not (tmp_path / BUFFER_FILE).exists()
    assert steps(tracker, run, "loss") == [(1, 1.0), (2, 0.5), (3, 0.25)]
    assert runs_by_name(tracker)["t0"].info.status == "FINISHED"
    assert artifact_dict(tracker, run, PER_ITEM_ARTIFACT) == items
    assert sync_buffer(tmp_path, mlflow_server.uri) == 0
