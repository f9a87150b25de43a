"""Attack settings: checked at load with one-line errors, and the metric table they add."""

from __future__ import annotations

import importlib.util

import pytest

from unlearn.attacks import metric_table
from unlearn.attacks.config import QuantConfig, RelearnConfig
from unlearn.attacks.relearn import relearn_batches, relearn_split
from unlearn.benchmarks import get_benchmark
from unlearn.errors import ConfigError
from unlearn.train.config import load_run_config


@pytest.mark.parametrize("override,message", [
    ("eval.quant.bits=[3]", "eval.quant.bits has 3; valid: 4, 8"),
    ("eval.quant.bits=[]", "eval.quant.bits is empty"),
    ("eval.quant.bits=[4,4]", "lists a width twice"),
    ("eval.quant.code=int8", "eval.quant.code='int8' is not valid; valid: fp4, nf4, int4"),
    ("eval.quant.backend=gptq", "valid: torch, bitsandbytes"),
    ("eval.quant.blocksize=1", "eval.quant.blocksize=1 is out of range"),
    ("eval.relearn.steps=0", "eval.relearn.steps=0 is out of range; valid: 1 or more"),
    ("eval.relearn.fraction=1.0", "eval.relearn.fraction=1.0 is out of range; valid: (0.0, 1.0)"),
    ("eval.relearn.fraction=0", "eval.relearn.fraction=0.0 is out of range"),
    ("eval.relearn.lr=0", "eval.relearn.lr=0"),
    ("eval.relearn.batch_size=0", "eval.relearn.batch_size=0 is out of range"),
    ("eval.relearn.folds=2", "folds"),
])
def test_a_bad_attack_setting_is_one_line_naming_it(override, message):
    with pytest.raises(ConfigError) as e:
        load_run_config(None, [override])
    assert message in str(e.value) and "\n" not in str(e.value)


def test_bitsandbytes_backend_options_it_cannot_run_are_refused():
    if importlib.util.find_spec("bitsandbytes") is None:
        with pytest.raises(ConfigError, match="bitsandbytes is not installed here; valid: install the quant extra"):
            QuantConfig(backend="bitsandbytes")
        return
    with pytest.raises(ConfigError, match="'int4'.*not a bitsandbytes code; valid .*fp4, nf4"):
        QuantConfig(backend="bitsandbytes", code="int4")
    with pytest.raises(ConfigError, match="blocksize=128 with backend bitsandbytes.*valid: 64"):
        QuantConfig(backend="bitsandbytes", blocksize=128)
    assert QuantConfig(backend="bitsandbytes", bits=(8,), code="int4").bits == (8,)  # the 4-bit code unused


@pytest.mark.parametrize("benchmark,metric", [("muse", "relearn_forget_verbmem_rouge"),
                                              ("wmdp", "relearn_wmdp_cyber_acc")])
def test_every_benchmark_takes_the_relearning_attack(benchmark, metric):
    cfg = load_run_config(None, [f"data.benchmark={benchmark}", "eval.relearn.steps=5"])
    assert metric in cfg.metrics.names and cfg.benchmark.relearns


def test_attack_metrics_are_the_benchmarks_prefixed_forget_side_by_default():
    cfg = load_run_config(None, ["eval.quant.bits=[4,8]", "eval.relearn.steps=5"])
    table = get_benchmark("generated").metrics
    names = cfg.metrics.names
    assert names[:len(table.names)] == table.names  # the benchmark's own first, unchanged
    forget_side = [m.name for m in table.metrics if not m.utility]
    assert names[len(table.names):] == tuple(p + n for p in ("q4_", "q8_", "relearn_") for n in forget_side)
    assert cfg.metrics.higher_is_better("q4_forget_quality") and not cfg.metrics.higher_is_better("relearn_forget_prob")
    assert cfg.metrics.utility_metric == table.utility_metric
    with pytest.raises(ConfigError, match="unknown metric 'q4_model_utility'"):
        cfg.metrics.get("q4_model_utility")
    full = metric_table(table, QuantConfig(bits=(4,), utility=True), None)
    assert "q4_model_utility" in full.names and "q8_forget_quality" not in full.names


@pytest.mark.parametrize("bench", ["muse", "wmdp"])
def test_every_benchmark_gets_prefixed_quantization_metrics(bench):
    table = metric_table(get_benchmark(bench).metrics, QuantConfig(), None)
    own = [m for m in get_benchmark(bench).metrics.metrics if not m.utility]
    for m in own:
        for p in ("q4_", "q8_"):
            assert table.get(p + m.name).goal == m.goal


def test_keep_best_by_may_name_an_attack_metric():
    cfg = load_run_config(None, ["eval.relearn.steps=5", "epoch_eval=true", "keep_best_by=relearn_forget_w1"])
    assert cfg.keep_best_by == "relearn_forget_w1"
    with pytest.raises(ConfigError, match="unknown metric 'relearn_forget_w1'"):
        load_run_config(None, ["epoch_eval=true", "keep_best_by=relearn_forget_w1"])


def test_the_relearning_split_depends_on_its_seed_only():
    a = relearn_split(40, RelearnConfig(fraction=0.25, seed=3))
    assert a == relearn_split(40, RelearnConfig(fraction=0.25, seed=3, lr=0.1, steps=2))
    assert len(a.relearn) == 10 and len(a.heldout) == 30
    assert sorted(a.relearn + a.heldout) == list(range(40))
    assert a != relearn_split(40, RelearnConfig(fraction=0.25, seed=4))


@pytest.mark.parametrize("n,fraction,least,side", [
    (40, 0.01, 1, "no forget row to relearn on; valid: a fraction of 40 forget rows that gives 1 to 39,"),
    (40, 0.99, 1, r"0 forget row\(s\) to evaluate on, fewer than the 1 its metrics need"),
    (4, 0.8, 2, r"1 forget row\(s\) to evaluate on, fewer than the 2 .*valid: .* gives 1 to 2, e.g. 0.25 to 0.5"),
    (2, 0.5, 2, ".*; valid: a forget set of more than 2 forget rows")])
def test_a_fraction_that_empties_a_side_names_what_would_work(n, fraction, least, side):
    with pytest.raises(ConfigError, match=f"eval.relearn.fraction={fraction} of {n} forget rows leaves {side}"):
        relearn_split(n, RelearnConfig(fraction=fraction), least)


def test_relearning_takes_exactly_its_steps():
    batches = relearn_batches(10, RelearnConfig(steps=7, batch_size=4))
    assert len(batches) == 7 and all(1 <= len(b) <= 4 for b in batches)
    assert batches == relearn_batches(10, RelearnConfig(steps=7, batch_size=4))


def test_a_fraction_the_data_cannot_split_fails_before_prepare(tmp_path):
    from unlearn.train.prepare import check_prepare_inputs

    cfg = load_run_config(None, [f"cache_dir={tmp_path / 'cache'}", "eval.relearn.fraction=0.99"])
    with pytest.raises(ConfigError, match="eval.relearn.fraction=0.99 of 40 forget rows leaves 0 forget row"):
        check_prepare_inputs(cfg, cfg.benchmark.load(cfg.data))
    assert not (tmp_path / "cache").exists()  # nothing prepared
