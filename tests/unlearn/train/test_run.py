"""A single unlearning run in one process: results file, forget quality up, utility kept."""

import json

import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.train.config import load_run_config
from unlearn.train.loop import Dist
from unlearn.train.run import run_local

pytestmark = pytest.mark.slow

RESULT_KEYS = {"forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "forget_prob", "forget_es",
               "retain_es", "retain_rouge", "retain_prob", "retain_truth_ratio"}


def test_default_satimp_run_raises_forget_quality_and_keeps_utility(default_prepared, tmp_path):
    cfg, prepared = default_prepared
    result = run_local(cfg, tmp_path, log=lambda s: None)
    doc = json.loads((tmp_path / "results.json").read_text())
    assert RESULT_KEYS <= set(doc["final"])
    assert doc["method"] == {"weighting": "satimp", "granularity": "token", "sampling": "none", "objective": "gd",
                             "retain": "nll", "importance": False, "reduction": "mean", "beta1": 5.0, "beta2": 0.1,
                             "gamma": 1.0, "alpha": 1.0}
    assert doc["config"]["optim"]["epochs"] == len(doc["epochs"])
    assert (tmp_path / "model" / "config.json").is_file()
    tl = doc["timeline"]  # where the run's time went, in order
    assert tl["setup_start"] <= tl["loop_start"] <= tl["loop_end"] <= tl["finish_end"]
    busy = sum(e["train/seconds"] + e.get("eval/seconds", 0.0) for e in doc["epochs"])
    assert 0 <= tl["checkpoint_report_s"] and busy <= tl["loop_end"] - tl["loop_start"]
    models = json.loads((prepared.root / "prepared.json").read_text())["metrics"]
    target, retain = models["target"], models["retain"]
    # Orderings with margin, not values (trained models move between machines): forget quality rose by
    # orders of magnitude (1e-7 -> 1e-3..3e-2 measured over two seeds: a KS statistic ~0.6 -> ~0.4, 10x is
    # ~5 KS steps below the lowest), the forget truth ratios moved towards the retain model's, and the
    # model kept most of its utility (0.93 of the target's measured).
    assert result.metrics["forget_quality"] > 10 * target["forget_quality"]
    tr = "forget_truth_ratio"
    assert abs(result.metrics[tr] - retain[tr]) < abs(target[tr] - retain[tr])
    assert result.metrics["model_utility"] >= 0.8 * target["model_utility"]


def test_epoch_eval_keeps_the_best_epoch(small_overrides, tmp_path):
    cfg = load_run_config(None, [*small_overrides, "optim.epochs=3", "epoch_eval=true",
                                 "keep_best_by=forget_truth_ratio"])
    seen = []
    result = run_local(cfg, tmp_path, report=lambda m, e: seen.append((e, m)), log=lambda s: None)
    assert [e for e, _ in seen] == [0, 1, 2]
    assert all("forget_quality" in m for _, m in seen)
    best = max(seen, key=lambda em: em[1]["forget_truth_ratio"])
    assert result.best_epoch == best[0] + 1
    assert result.metrics["forget_truth_ratio"] == best[1]["forget_truth_ratio"]
    assert json.loads((tmp_path / "results.json").read_text())["best_epoch"] == best[0] + 1


def test_a_diverged_epoch_is_named_so_by_its_evaluation(small_overrides, tmp_path):
    """lr 1e9: the first epoch's loss is finite, the weights it leaves give non-finite scores; an evaluation
    after that epoch (epoch_eval) says the run diverged and what to change, as a non-finite loss does."""
    from unlearn.train.loop import DivergedError

    cfg = load_run_config(None, [*small_overrides, "optim.lr=1e9", "epoch_eval=true"])
    with pytest.raises(DivergedError, match=r"loss is .* at epoch 1.*not finite.*optim.lr=1000000000.0.*lower the "
                                            r"learning rate"):
        run_local(cfg, tmp_path, log=lambda s: None)


def test_checkpoint_every_n_epochs_but_not_after_the_last(small_overrides, tmp_path):
    from unlearn.train.prepare import prepare
    from unlearn.train.run import CallbackReporter, unlearn_worker
    from unlearn.train.strategy import Strategy

    cfg = load_run_config(None, [*small_overrides, "optim.epochs=5", "checkpoint_every=2"])
    seen = []
    reporter = CallbackReporter(lambda m, e: seen.append(e), checkpoint_root=tmp_path / "ckpt")
    unlearn_worker(cfg, prepare(cfg, log=lambda s: None), strategy=Strategy(torch.device("cpu")), dist=Dist(),
                   reporter=reporter, out_dir=None, log=lambda s: None)
    assert seen == [0, 1, 2, 3, 4]  # every epoch reported
    # checkpoints after epochs 2 and 4 (every 2), each complete; none after epoch 5, the last (the run's
    # model and results follow)
    assert sorted(d.name for d in (tmp_path / "ckpt").iterdir()) == ["epoch_1", "epoch_3"]
    assert [json.loads((tmp_path / "ckpt" / d / "meta.json").read_text())["epoch"] for d in ("epoch_1", "epoch_3")] == [2, 4]


def test_a_lora_run_exports_the_merged_model_and_its_adapter(lora_one_worker):
    """model.lora through run_local: NPO's reference is the policy with its adapters off (the base weights never
    move), and the merged export, loaded with plain transformers, gives the logits of the target + adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    _, res, out = lora_one_worker
    doc = json.loads((out / "results.json").read_text())
    assert res.reference_max_change == 0.0 and doc["adapter_dir"] == str(out / "adapter")
    assert 0 < res.metrics["params/trainable"] < res.metrics["params/total"] / 10
    merged = AutoModelForCausalLM.from_pretrained(out / "model")
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(f"{doc['prepared']}/target"),
                                        out / "adapter")
    ids = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29]])
    with torch.no_grad():
        got, want = merged(input_ids=ids).logits, adapted(input_ids=ids).logits
        with adapted.disable_adapter():
            base = adapted(input_ids=ids).logits
    diff, moved = float((got - want).abs().max()), float((want - base).abs().max())
    assert diff < 1e-3 * moved  # merging reassociates the sum: equal to float rounding, far below the change


def test_naive_and_fused_paths_agree(small_overrides, tmp_path):
    a = run_local(load_run_config(None, [*small_overrides, "optim.epochs=1"]), tmp_path / "a", log=lambda s: None)
    b = run_local(load_run_config(None, [*small_overrides, "optim.epochs=1", "optim.loss_path=naive"]),
                  tmp_path / "b", log=lambda s: None)
    assert a.metrics["train/loss"] == pytest.approx(b.metrics["train/loss"], rel=1e-4)


def test_tofu_forget01_end_to_end(tofu_dir, cache_dir, tmp_path):
    cfg = load_run_config(None, [f"cache_dir={cache_dir}", "data.benchmark=tofu", f"data.path={tofu_dir}",
                                 "data.split=forget01", "model.name=tiny-2l", "prepare.epochs=1", "prepare.batch_size=64",
                                 "optim.epochs=1",
                                 "eval.max_new_tokens=8", "eval.batch_size=64"])
    result = run_local(cfg, tmp_path, log=lambda s: None)
    assert RESULT_KEYS <= set(result.metrics)
    assert 0.0 <= result.metrics["forget_quality"] <= 1.0
    assert len(json.loads((tmp_path / "results.json").read_text())["epochs"]) == 1


@pytest.mark.parametrize("override,match", [
    ("optim.lrr=1", r"unknown key 'optim.lrr' \(did you mean 'lr'\?\)"),
    ("data.benchmark=mmlu", r"'mmlu' in data.benchmark.*generated, muse, tofu"),
    ("data.split=forget02", r"forget01, forget05, forget10"),
    ("keep_best_by=forget_quality", r"keep_best_by needs epoch_eval"),
    ("checkpoint_every=-1", r"checkpoint_every"),
    ("method.weighting=satimpp", r"unknown weighting 'satimpp'"),
])
def test_bad_config_is_rejected_before_training(override, match):
    with pytest.raises(ConfigError, match=match):
        load_run_config(None, [override])


def test_unreadable_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed")
    with pytest.raises(ConfigError, match="bad.yaml: invalid YAML"):
        load_run_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_run_config(tmp_path / "missing.yaml")
