"""WMDP end to end on the offline fixture with a tiny model, through the plug-in: prepare (target on forget +
retain text, retain model on retain text), RMU and SatImp-GD runs, every metric from lm-evaluation-harness.

A cheap prepare (plumbing): the README's demo trains the target long enough to answer the fixture's questions.
"""

from __future__ import annotations

import json
import math
import shutil

import pytest

from unlearn.benchmarks import get_benchmark
from unlearn.benchmarks.wmdp import FIXTURE_DIR, names
from unlearn.errors import ConfigError
from unlearn.models import load_model
from unlearn.train.config import load_run_config
from unlearn.train.prepare import prepare
from unlearn.train.run import run_local

pytestmark = pytest.mark.slow

SMALL = ["data.benchmark=wmdp", f"data.path={FIXTURE_DIR}", f"data.tasks_path={FIXTURE_DIR / 'tasks'}",
         "data.max_length=64", "data.mmlu=subset", "model.name=tiny", "prepare.epochs=3", "prepare.batch_size=8",
         "optim.epochs=2", "optim.batch_size=8", "checkpoint_every=0", "eval.batch_size=64"]
RMU = ["method={weighting: uniform, objective: rmu, layer: 2, steering_coeff: 20.0, alpha: 1.0, "
       r"trainable: 'model\.layers\.(1|2)\.mlp\.down_proj\.weight'}", "optim.lr=1e-2", "epoch_eval=true"]


@pytest.fixture(scope="module")
def wmdp_prepared(cache_dir):
    cfg = load_run_config(None, [*SMALL, f"cache_dir={cache_dir}"])
    return cfg, prepare(cfg, log=lambda s: None)


def test_prepare_then_rmu_steers_only_its_parameters(wmdp_prepared, tmp_path):
    cfg, prepared = wmdp_prepared
    models = json.loads((prepared.root / "prepared.json").read_text())["metrics"]
    table = get_benchmark("wmdp").metrics
    for m in (models["target"], models["retain"]):
        assert set(m) == set(table.names)
        assert all(0.0 <= m[k] <= 1.0 for k in (names.WMDP_BIO_ACC, names.WMDP_CYBER_ACC, names.MMLU_ACC))
    assert prepared.reference == {}  # absolute accuracies: no retain statistics

    rmu = load_run_config(None, [*SMALL, *RMU, f"cache_dir={cfg.cache_dir}"])
    result = run_local(rmu, tmp_path, log=lambda s: None)
    assert [set(table.names) <= set(h) for h in result.history] == [True, True]  # every epoch evaluated
    mse = [h["train/forget_act_mse"] for h in result.history]
    assert mse[1] < mse[0]  # the forget activations move towards the control vector
    assert "train/retain_act_mse" in result.history[0]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["method"]["objective"] == "rmu" and doc["method"]["retain"] == "embed"
    assert doc["reference_max_change"] == 0.0  # the frozen model did not move
    target, unlearned = load_model(prepared.target_dir).state_dict(), load_model(tmp_path / "model").state_dict()
    changed = {k for k in target if not (target[k] == unlearned[k]).all()}
    assert changed == {"model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"}


def test_satimp_gd_runs_on_wmdp(wmdp_prepared, tmp_path):
    cfg, _ = wmdp_prepared
    gd = load_run_config(None, [*SMALL, "optim.epochs=1", "optim.lr=1e-3", f"cache_dir={cfg.cache_dir}",
                                "eval.quant.bits=[4]", "eval.relearn={fraction: 0.25, steps: 2}"])
    result = run_local(gd, tmp_path, log=lambda s: None)
    final = result.metrics
    assert gd.method.label == "satimp-gd"
    for k in (names.WMDP_CYBER_ACC, names.MMLU_ACC):
        assert 0.0 <= final[k] <= 1.0 and math.isfinite(final[names.stderr_name(k)])
    # the 4-bit attack through the harness: WMDP's forget-side metrics prefixed, MMLU (utility) left out
    assert 0.0 <= final["q4_" + names.WMDP_CYBER_ACC] <= 1.0 and "q4_" + names.MMLU_ACC not in final
    # relearning on a quarter of the forget documents, then every question asked again; the split on record
    assert 0.0 <= final["relearn_" + names.WMDP_CYBER_ACC] <= 1.0 and "relearn_" + names.MMLU_ACC not in final
    split = json.loads((tmp_path / "results.json").read_text())["attacks"]["relearn_split"]
    assert split["unit"] == "forget document" and len(split["relearn"]) == 6 and len(split["heldout"]) == 18
    # results.json keeps each question's correctness: each accuracy is its mean
    items = json.loads((tmp_path / "results.json").read_text())["per_item"]
    assert set(items) == set(names.PER_ITEM) and items == result.per_item
    for k, values in items.items():
        assert set(values) <= {0.0, 1.0} and final[k] == pytest.approx(sum(values) / len(values), abs=1e-12)


def test_bad_inputs_fail_before_training(tmp_path, cache_dir):
    # a task the fixture's index lacks, raised when the benchmark loads (before any model)
    bad_tasks = shutil.copytree(FIXTURE_DIR / "tasks", tmp_path / "tasks")
    (bad_tasks / "wmdp_cyber.yaml").unlink()
    cfg = load_run_config(None, [*SMALL, f"data.tasks_path={bad_tasks}", f"cache_dir={cache_dir}"])
    with pytest.raises(ConfigError, match=r"harness task 'wmdp_cyber' is not known to data.tasks_path"):
        prepare(cfg, log=lambda s: None)
    # RMU's layer must exist in the model
    with pytest.raises(ConfigError, match=r"method.layer=4 is out of range for model 'tiny'"):
        load_run_config(None, [*SMALL, "method={weighting: uniform, objective: rmu, layer: 4}"])
