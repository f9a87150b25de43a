"""MUSE end to end on real MUSE-News rows with a tiny model: prepare (target on forget + retain text,
retain model on retain text) -> unlearn (SatImp-GD on forget chunks) -> evaluate, through the plug-in."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import MUSE_DIR
from unlearn.benchmarks import get_benchmark
from unlearn.benchmarks.muse import names
from unlearn.errors import ConfigError
from unlearn.train.config import load_run_config
from unlearn.train.prepare import prepare
from unlearn.train.run import run_local

pytestmark = pytest.mark.slow

# search_spaces/muse.yaml's base (8 articles, 8 questions; prepare ~3 min on 2 cores, shared with the sweep
# test through the session's prepare cache)
MUSE_SMALL = ["data.benchmark=muse", "data.corpus=news", f"data.path={MUSE_DIR}", "data.max_articles=8", "data.max_questions=8",
              "data.max_length=128", "model.name=tiny", "prepare.epochs=24", "prepare.batch_size=8", "optim.epochs=3",
              "optim.lr=1e-3", "optim.batch_size=4", "eval.batch_size=32"]


@pytest.fixture(scope="module")
def muse_prepared(cache_dir):
    if not (MUSE_DIR / "MANIFEST.json").is_file():
        pytest.fail(f"no local MUSE-News copy at {MUSE_DIR}")
    cfg = load_run_config(None, [*MUSE_SMALL, f"cache_dir={cache_dir}"])
    return cfg, prepare(cfg, log=lambda s: None)


def test_prepare_unlearn_evaluate(muse_prepared, tmp_path):
    cfg, prepared = muse_prepared
    models = json.loads((prepared.root / "prepared.json").read_text())["metrics"]
    target, retain = models["target"], models["retain"]
    table = get_benchmark("muse").metrics
    for m in (target, retain):
        assert set(m) == set(table.names)  # every MUSE metric, nothing else
        for k in (names.FORGET_VERBMEM_ROUGE, names.FORGET_KNOWMEM_ROUGE, names.RETAIN_KNOWMEM_ROUGE,
                  names.PRIVLEAK_AUC, names.FORGET_ES):
            assert 0.0 <= m[k] <= 1.0, (k, m[k])
    # The retain model against itself: privleak 0 by definition; its AUC is the reference.
    assert retain[names.PRIVLEAK] == 0.0
    assert prepared.reference == {"privleak_auc": retain[names.PRIVLEAK_AUC]}
    # The target was trained on the forget articles, the retain model was not (orderings, not values; one
    # machine measured verbmem ROUGE 0.18 vs 0.12 and min-k AUC 0.73 vs 0.09)
    assert target[names.FORGET_VERBMEM_ROUGE] > retain[names.FORGET_VERBMEM_ROUGE]
    assert target[names.PRIVLEAK_AUC] > retain[names.PRIVLEAK_AUC] + 0.2

    result = run_local(cfg, tmp_path, log=lambda s: None)
    final = result.metrics
    assert set(table.names) <= set(final)
    assert math.isclose(final[names.ABS_PRIVLEAK], abs(final[names.PRIVLEAK]))
    # Unlearning moved verbatim memorisation of the forget articles down and privacy leakage towards 0
    # (measured: verbmem 0.18 -> 0.15, privleak -71 -> -53).
    assert final[names.FORGET_VERBMEM_ROUGE] < target[names.FORGET_VERBMEM_ROUGE]
    assert abs(final[names.PRIVLEAK]) < abs(target[names.PRIVLEAK])
    doc = json.loads((tmp_path / "results.json").read_text())
    assert doc["config"]["data"]["benchmark"] == "muse" and doc["config"]["data"]["split"] == "forget"
    # results.json keeps the final evaluation's per-item record: each averaged metric is its mean
    assert list(doc["per_item"]) == list(names.PER_ITEM) and doc["per_item"] == result.per_item
    for k in (names.FORGET_VERBMEM_ROUGE, names.FORGET_ES, names.FORGET_KNOWMEM_ROUGE, names.RETAIN_KNOWMEM_ROUGE):
        assert final[k] == pytest.approx(sum(doc["per_item"][k]) / len(doc["per_item"][k]), abs=1e-12)


def test_importance_is_refused_on_muse():
    with pytest.raises(ConfigError, match="method.importance.*MUSE|key-token annotations"):
        load_run_config(None, [*MUSE_SMALL, "method.importance=true"])


def test_a_hub_style_target_needs_the_retain_auc(muse_prepared, tmp_path):
    """prepare.finetune=false (e.g. muse-bench/MUSE-news_target): privleak needs the retain model's AUC,
    from a file; a file of the wrong content fails before anything is trained."""
    cfg, prepared = muse_prepared
    base = [*MUSE_SMALL, f"model.name={prepared.target_dir}", "prepare.finetune=false", f"cache_dir={tmp_path / 'c'}"]
    with pytest.raises(ConfigError, match="prepare.retain_stats"):
        prepare(load_run_config(None, base), log=lambda s: None)
    bad = tmp_path / "auc.json"
    bad.write_text(json.dumps({"privleak_auc": 1.7}))
    with pytest.raises(ConfigError, match=r"privleak_auc=1.7"):
        prepare(load_run_config(None, [*base, f"prepare.retain_stats={bad}"]), log=lambda s: None)
    good = tmp_path / "retain_stats.json"
    good.write_text(json.dumps(prepared.reference))
    again = prepare(load_run_config(None, [*base, f"prepare.retain_stats={good}"]), log=lambda s: None)
    assert again.reference == prepared.reference and again.target_dir == prepared.target_dir
