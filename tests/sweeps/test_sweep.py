"""A tiny sweep end to end: MLflow tree, Optuna storage, report, export-best reproduced by run."""

import json
from pathlib import Path

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from sweeps.cli import main
from sweeps.sweep import SweepSettings, launch_sweep, load_sweep_meta, resume_sweep
from sweeps.ray_run import run_unlearning
from sweeps.tracking import PER_ITEM_ARTIFACT
from tests.helpers import free_port, tiny_space
from unlearn.errors import ConfigError
from unlearn.train.config import load_run_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, ray_local, cache_dir):
    root = tmp_path_factory.mktemp("sweep")
    space = tiny_space(root, cache_dir, launcher="auto")  # as the shipped spaces: each trial in its own process
    result = launch_sweep(space, [], SweepSettings(out_dir=str(root / "out"), progress=False))
    return result


def _children(result):
    client = MlflowClient(result.mlflow_uri)
    parent = client.get_run(result.parent_run_id)
    kids = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`mlflow.parentRunId` = '{result.parent_run_id}'")
    return client, parent, kids


def _per_item(client, kid, tmp_path: Path) -> dict:
    """The per_item.json artifact of a trial's MLflow run."""
    dst = tmp_path / kid.info.run_id
    dst.mkdir()
    return json.loads(Path(client.download_artifacts(kid.info.run_id, PER_ITEM_ARTIFACT, str(dst))).read_text())


def test_mlflow_holds_one_parent_and_one_child_per_trial(sweep, tmp_path):
    client, parent, kids = _children(sweep)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["unlearn.sweep_id"] == load_sweep_meta(sweep.out_dir)["sweep_id"]
    assert len(kids) == 3 == len(sweep.trials)
    assert {k.data.tags["unlearn.trial_id"] for k in kids} == {t.trial_id for t in sweep.trials}
    for kid in kids:
        assert kid.info.status == "FINISHED"
        assert {"method.beta1", "method.beta2", "optim.lr", "seed", "model.name"} <= set(kid.data.params)
        history = client.get_metric_history(kid.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == [1, 2]
        assert 0.0 <= kid.data.metrics["forget_quality"] <= 1.0
        # the trial's per-question statistics, as its run's results.json keeps them
        (rep,) = _per_item(client, kid, tmp_path)["replicates"]
        trial = next(t for t in sweep.trials if t.trial_id == kid.data.tags["unlearn.trial_id"])
        assert rep["per_item"] == json.loads((trial.dir / "results.json").read_text())["per_item"]
        assert set(rep["per_item"]) == {"forget_truth_ratio", "forget_prob", "forget_es"}
    arts = {a.path for a in client.list_artifacts(parent.info.run_id, "sweep")}
    assert {"sweep/best_config.yaml", "sweep/trials.csv"} <= arts
    assert any(a.path.startswith("plots/") for a in client.list_artifacts(parent.info.run_id, "plots"))


def test_each_trial_writes_its_plan_and_mlflow_records_the_same(sweep):
    """The trial resolves its plan once (plan.json); its run's config and the driver's MLflow params agree."""
    _, _, kids = _children(sweep)
    by_id = {k.data.tags["unlearn.trial_id"]: k for k in kids}
    for t in sweep.trials:
        plan = json.loads((sweep.out_dir / "trials" / t.trial_id / "plan.json").read_text())
        cfg = plan["replicates"][0]["config"]
        assert plan["params"] == t.params
        assert cfg == json.loads((t.dir / "config.json").read_text())
        params = by_id[t.trial_id].data.params
        assert params["seed"] == str(cfg["seed"]) == str(plan["replicates"][0]["seed"])
        assert float(params["method.beta1"]) == cfg["method"]["beta1"] == t.params["method.beta1"]


def test_a_finished_trials_process_runs_the_next_trial(sweep):
    """Tune reuses trial actors (no early stopping here): 3 trials, 2 at a time, in 2 processes; with one
    CPU worker (launcher auto) each trial's run executes in that process (Ray Train's local mode)."""
    pids = {}
    for result in (sweep.out_dir / "ray" / "tune").glob("run_trial_*/result.json"):
        first = json.loads(result.read_text().splitlines()[0])
        pids[first["trial_id"]] = first["pid"]
    assert len(pids) == 3 and len(set(pids.values())) == 2, pids
    for t in sweep.trials:
        doc = json.loads((t.dir / "results.json").read_text())
        assert doc["launcher"] == "local"
        # checkpoints where Ray Train would write them; none after the last epoch (epoch 2)
        ckpts = (sweep.out_dir / "ray" / "train" / f"trial-{t.trial_id}").glob("epoch_*")
        assert [d.name for d in ckpts] == ["epoch_0001"]


def test_trial_seed_is_a_function_of_sweep_seed_and_parameters(sweep, tmp_path, cache_dir):
    from dataclasses import replace

    from sweeps.space import load_space, replicate_seeds, trial_seed

    space = load_space(tiny_space(tmp_path, cache_dir))
    a = {"method.beta1": 5.0, "method.beta2": 0.1}
    assert trial_seed(space, a) == trial_seed(space, {"method.beta2": 0.1, "method.beta1": 5.0})
    assert trial_seed(space, a) != trial_seed(space, {"method.beta1": 5.0, "method.beta2": 0.2})
    assert trial_seed(space, a) != trial_seed(replace(space, budget=replace(space.budget, seed=1)), a)
    # every trial of the sweep ran with its replicate's seed (budget.seeds: per_point, the default: a function
    # of the sweep seed and the point, so a second launch gives the paper's point the same run)
    assert space.budget.seeds == "per_point"
    seeds = {t.trial_id: json.loads((sweep.out_dir / "trials" / t.trial_id / "config.json").read_text())["seed"]
             for t in sweep.trials}
    assert seeds == {t.trial_id: replicate_seeds(space, t.params)[0] for t in sweep.trials}
    assert len(set(seeds.values())) == len({json.dumps(t.params, sort_keys=True) for t in sweep.trials})


def test_optuna_storage_holds_the_trials(sweep):
    meta = load_sweep_meta(sweep.out_dir)
    study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 3
    assert complete[0].params == {"method.beta1": 5.0, "method.beta2": 0.1}  # the initial point first
    by_value = sorted(t.metrics["forget_quality"] for t in sweep.trials)
    assert sorted(t.value for t in complete) == pytest.approx(by_value)


def test_report_prints_trials_and_best(sweep, capsys):
    assert main(["report", str(sweep.out_dir)]) == 0
    out = capsys.readouterr().out
    for t in sweep.trials:
        assert t.trial_id in out
    assert "trials: 3 finished" in out and f"best: {sweep.best.trial_id}" in out


def test_export_best_is_reproduced_by_run(sweep, tmp_path, capsys):
    best_yaml, model = tmp_path / "best.yaml", tmp_path / "model"
    assert main(["export-best", str(sweep.out_dir), "--out", str(best_yaml), "--model", str(model)]) == 0
    assert (model / "config.json").is_file()
    with pytest.raises(ConfigError, match="already exists and is not empty; pass --force"):
        main_raises(["export-best", str(sweep.out_dir), "--out", str(best_yaml)])
    cfg = load_run_config(best_yaml)
    assert cfg.seed == sweep.best.config["seed"]
    rerun = run_unlearning(cfg, tmp_path / "rerun", log=lambda s: None)
    for key in ("forget_quality", "forget_truth_ratio", "model_utility", "train/loss"):
        assert rerun.metrics[key] == pytest.approx(sweep.best.metrics[key], rel=1e-5, abs=1e-8)


def main_raises(argv):
    """Run a CLI command's library function so that its ConfigError reaches the test."""
    from sweeps.report import export_best
    from sweeps.space import load_space

    root = Path(argv[1])
    export_best(root, load_space(root / "space.yaml"), Path(argv[3]))


def _space_file(tmp_path: Path, cache_dir: Path, **changes) -> Path:
    space = yaml.safe_load(tiny_space(tmp_path, cache_dir, launcher="auto").read_text())
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = space
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture(scope="module")
def kept(tmp_path_factory, ray_local, cache_dir):
    """One trial whose kept epoch (keep_best_by) is not its last: gradient ascent at a high rate lowers the
    retain probability every epoch (0.013 -> 0.010 -> 0.009 measured), so the best epoch by it is the first."""
    root = tmp_path_factory.mktemp("kept")
    space = _space_file(root, cache_dir, base__method={"weighting": "satimp", "objective": "ga"},
                        base__optim={"epochs": 3, "batch_size": 4, "lr": 1e-2}, base__epoch_eval=True,
                        base__keep_best_by="retain_prob", base__eval={"max_new_tokens": 12, "batch_size": 64, "rouge": False},
                        objectives=[{"metric": "retain_prob", "direction": "maximize"}],
                        budget={"num_samples": 1, "seed": 0})
    return launch_sweep(space, [], SweepSettings(out_dir=str(root / "out"), progress=False))


def test_the_value_of_record_is_the_kept_epoch_everywhere(kept, capsys):
    """Optuna, MLflow, the ledger, report and export-best all hold the kept epoch's value, not the last's."""
    (trial,) = kept.trials
    tdir = trial.dir
    results = json.loads((tdir / "results.json").read_text())
    by_epoch = {h["epoch"]: h["retain_prob"] for h in results["epochs"]}
    assert results["best_epoch"] < max(by_epoch)  # the premise: the kept epoch is not the last
    value = by_epoch[results["best_epoch"]]
    assert value > by_epoch[max(by_epoch)]
    assert trial.metrics["retain_prob"] == value == json.loads((tdir / "record.json").read_text())["metrics"]["retain_prob"]
    meta = load_sweep_meta(kept.out_dir)
    (study_trial,) = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"]).trials
    assert study_trial.value == pytest.approx(value)
    client, _, (kid,) = _children(kept)
    assert kid.data.metrics["record/retain_prob"] == pytest.approx(value)
    history = client.get_metric_history(kid.info.run_id, "retain_prob")  # the per-epoch history stays as it was
    assert {m.step: m.value for m in history} == pytest.approx(by_epoch)
    assert json.loads((tdir / "trial.json").read_text())["record"]["retain_prob"] == pytest.approx(value)
    assert main(["report", str(kept.out_dir)]) == 0
    assert f"best: {trial.trial_id} retain_prob={value:.4g}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def replicated(tmp_path_factory, ray_local, cache_dir):
    """Two points of two replicates on common seeds, attacked (4-bit, and relearning on half of the 4 forget rows), with a bound
    on an attack metric that every run keeps (a probability is at most 1)."""
    root = tmp_path_factory.mktemp("replicated")
    attacks = {"quant": {"bits": [4]}, "relearn": {"fraction": 0.5, "steps": 2}}
    space = _space_file(root, cache_dir, budget={"num_samples": 2, "max_concurrent": 2, "seed": 0, "replicates": 2,
                                                     "seeds": "common"},
                        base__eval={"max_new_tokens": 12, "batch_size": 64, **attacks},
                        constraints=[{"metric": "forget_truth_ratio", "min_fraction_of_target": 0.5},
                                     {"metric": "relearn_forget_prob", "max": 1.0}])
    return launch_sweep(space, [], SweepSettings(out_dir=str(root / "out"), progress=False))


def test_a_replicated_trial_records_its_mean_in_optuna_mlflow_and_the_report(replicated, capsys, tmp_path):
    from sweeps.space import load_space, replicate_seeds

    space = load_space(replicated.out_dir / "space.yaml")
    client, _, kids = _children(replicated)
    meta = load_sweep_meta(replicated.out_dir)
    study = optuna.load_study(study_name=meta["study_name"], storage=meta["optuna_storage"])
    assert len(kids) == 2 and len(study.trials) == 2
    for t in replicated.trials:
        record = t.record
        seeds = [r["seed"] for r in record.replicates]
        assert seeds == replicate_seeds(space, t.params) and len(set(seeds)) == 2
        finals = [json.loads((t.dir / "replicates" / str(i) / "results.json").read_text())["final"]
                  for i in range(2)]
        mean = (finals[0]["forget_quality"] + finals[1]["forget_quality"]) / 2
        assert t.metrics["forget_quality"] == pytest.approx(mean)
        assert [s.value for s in study.trials if s.params == t.params] == [pytest.approx(mean)]
        (kid,) = [k for k in kids if k.data.tags["unlearn.trial_id"] == t.trial_id]
        assert kid.data.metrics["record/forget_quality"] == pytest.approx(mean)
        for attacked in ("q4_forget_quality", "relearn_forget_prob"):  # the attacks' metrics are recorded alike
            assert kid.data.metrics[f"record/{attacked}"] == pytest.approx((finals[0][attacked] + finals[1][attacked]) / 2)
        assert kid.data.tags["unlearn.feasible"] == str(record.feasible).lower()
        nested = client.search_runs([kid.info.experiment_id],
                                    filter_string=f"tags.`mlflow.parentRunId` = '{kid.info.run_id}'")
        assert sorted(int(r.data.params["seed"]) for r in nested) == sorted(seeds)
        # one entry per replicate, its index and seed with its run's per-question statistics
        items = _per_item(client, kid, tmp_path)["replicates"]
        assert [(r["index"], r["seed"]) for r in items] == [(r["index"], r["seed"]) for r in record.replicates]
        for i, r in enumerate(items):
            doc = json.loads((t.dir / "replicates" / str(i) / "results.json").read_text())
            assert r["per_item"] == doc["per_item"] and len(r["per_item"]["forget_prob"]) > 1
        assert record.constraints[0]["threshold"] > 0  # resolved against the prepared target model
    # common random numbers: replicate r of every point ran the same seed
    assert len({tuple(r["seed"] for r in t.record.replicates) for t in replicated.trials}) == 1
    # every run (two seeds each, two points) relearned on the same forget rows: the split is the attack's own
    splits = [json.loads((t.dir / "replicates" / str(i) / "results.json").read_text())["attacks"]["relearn_split"]
              for t in replicated.trials for i in range(2)]
    assert all(s == splits[0] for s in splits) and sorted(splits[0]["relearn"] + splits[0]["heldout"]) == [0, 1, 2, 3]
    assert main(["report", str(replicated.out_dir)]) == 0
    out = capsys.readouterr().out
    assert "values of record: mean over 2 replicates" in out and "Student's t interval" in out
    assert "constraint: forget_truth_ratio >= " in out and "feasible" in out and "+-" in out
    assert "constraint: relearn_forget_prob <= 1" in out


def test_pareto_export_writes_an_index_and_a_file_that_reproduces_replicate_zero(replicated, tmp_path, capsys):
    out = tmp_path / "pareto"
    assert main(["export-best", str(replicated.out_dir), "--pareto", str(out)]) == 0
    index = yaml.safe_load((out / "index.yaml").read_text())
    (row,) = index["pareto"]  # one objective: the best trial
    assert row["trial"] == replicated.best.trial_id and row["file"] == f"{row['trial']}.yaml"
    assert row["seeds"] == [r["seed"] for r in replicated.best.record.replicates]
    assert "replicate 0" in (out / row["file"]).read_text()
    cfg = load_run_config(out / row["file"])
    rerun = run_unlearning(cfg, tmp_path / "rerun", log=lambda s: None)
    first = json.loads((replicated.best.run_dir / "results.json").read_text())["final"]
    for key in ("forget_quality", "forget_truth_ratio", "train/loss", "q4_forget_prob", "relearn_forget_prob"):
        assert rerun.metrics[key] == pytest.approx(first[key], rel=1e-5, abs=1e-8)
    assert main(["export-best", str(replicated.out_dir), "--pareto", str(out)]) == 2  # not empty: --force


def test_resume_of_a_finished_sweep_reruns_nothing(sweep):
    before = {t.trial_id: json.loads((t.dir / "trial.json").read_text())["starts"] for t in sweep.trials}
    again = resume_sweep(sweep.out_dir, progress=False)
    after = {t.trial_id: json.loads((t.dir / "trial.json").read_text())["starts"] for t in again.trials}
    assert after == before
    _, _, kids = _children(again)
    assert len(kids) == 3


def test_bad_sweep_inputs_fail_before_ray(tmp_path, cache_dir):
    space = tiny_space(tmp_path, cache_dir)
    port = free_port()
    with pytest.raises(ConfigError, match=f"127.0.0.1:{port}"):
        launch_sweep(space, [], SweepSettings(out_dir=str(tmp_path / "a"), mlflow_uri=f"http://127.0.0.1:{port}"))
    with pytest.raises(ConfigError, match="holds no sweep"):
        resume_sweep(tmp_path)
    with pytest.raises(ConfigError, match=r"tiny.yaml: budget: num_samples=0 is out of range"):
        launch_sweep(space, ["budget.num_samples=0"], SweepSettings(out_dir=str(tmp_path / "b")))


@pytest.mark.gpu
def test_gpu_sweep_runs_fsdp_trials_on_cuda(tmp_path, ray_local, cache_dir):
    """scaling.use_gpu: each trial's Ray Train worker holds a GPU, shards with FSDP2 (bf16 compute) and
    evaluates there; the sweep places no more trials at once than the cluster has GPUs."""
    from sweeps.results import load_results

    space = tiny_space(tmp_path, cache_dir, num_samples=2, launcher="ray_train")
    result = launch_sweep(space, ["base.scaling.use_gpu=true", "base.scaling.strategy=fsdp"],
                          SweepSettings(out_dir=str(tmp_path / "out"), progress=False))
    assert len(result.trials) == 2
    for t in result.trials:
        doc = load_results(t.dir)
        assert doc["device"].startswith("cuda") and doc["strategy"] == "fsdp"
        assert 0.0 <= doc["final"]["forget_quality"] <= 1.0
    _, parent, kids = _children(result)
    assert parent.info.status == "FINISHED" and [k.info.status for k in kids] == ["FINISHED"] * 2


# A sweep to a real `mlflow server` via --mlflow-uri: tests/sweeps/test_faults.py (the server also goes down).


def test_export_best_registers_the_model_in_mlflow(sweep, tmp_path):
    assert main(["export-best", str(sweep.out_dir), "--out", str(tmp_path / "b.yaml"), "--register", "tiny-best"]) == 0
    client = MlflowClient(sweep.mlflow_uri)
    version = client.get_model_version_by_alias("tiny-best", "best")
    assert version.run_id in {k.info.run_id for k in _children(sweep)[2]}
    assert any(a.path == "model" for a in client.list_artifacts(version.run_id))
