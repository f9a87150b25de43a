"""The TOFU-family plug-in: evaluation through it adds the membership attacks and privleak, relative to
the reference statistics it returns; reference files with and without privleak's retain AUC."""

from __future__ import annotations

import json

import pytest

from unlearn.attacks.relearn import RelearnSplit
from unlearn.benchmarks import get_benchmark
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.benchmarks.generated import GeneratedOptions
from unlearn.benchmarks.tofu import names
from unlearn.data.formatting import IGNORE_INDEX
from unlearn.data.batching import encode_rows
from unlearn.errors import ConfigError
from unlearn.metrics import mia
from unlearn.models import ModelConfig, build_tiny, train_tokenizer

CFG = DataConfig(options=GeneratedOptions(num_authors=6, qa_per_author=3))
FAST = EvalConfig(batch_size=16, max_new_tokens=4)


@pytest.fixture(scope="module")
def setup():
    bench = get_benchmark("generated")
    data = bench.load(CFG)
    tok = train_tokenizer(bench.tokenizer_corpus(data, CFG), 300)
    model = build_tiny(ModelConfig(name="tiny-2l"), len(tok), seed=0, pad_id=tok.pad_token_id,
                       bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    return bench, data, tok, model


def test_membership_metrics_and_privleak(setup):
    bench, data, tok, model = setup
    own = bench.evaluate(model, tok, data, CFG, FAST, "self")
    assert own.metrics[names.PRIVLEAK] == 0.0 and own.metrics[names.FORGET_QUALITY] == 1.0
    assert set(own.reference) == {"forget_truth_ratios", "privleak_auc"}
    for m in names.MIA_METRICS:
        assert 0.0 <= own.metrics[m] <= 1.0
    # min-k% AUC recomputed in the test from the attack's pure functions on the same encoded rows
    scores = []
    for rows in (data.forget, data.holdout):
        ex = encode_rows(tok, rows, max_length=FAST.max_length, fmt=CFG.options.prompt)
        scores.append([mia.mink_score(s, 0.4) for s in mia.score_examples(model, ex, tok.pad_token_id, 4)])
    assert own.metrics[names.MIA_METRICS[2]] == pytest.approx(mia.attack_auc(*scores), abs=1e-12)
    assert own.reference["privleak_auc"] == own.metrics["mia_min_k"]
    shifted = {**own.reference, "privleak_auc": 0.25}
    out = bench.evaluate(model, tok, data, CFG, FAST, shifted)
    assert out.metrics[names.PRIVLEAK] == pytest.approx(mia.privleak(out.metrics["mia_min_k"], 0.25))
    assert out.metrics[names.ABS_PRIVLEAK] == abs(out.metrics[names.PRIVLEAK])
    no_auc = bench.evaluate(model, tok, data, CFG, FAST, {"forget_truth_ratios": own.reference["forget_truth_ratios"]})
    assert names.PRIVLEAK not in no_auc.metrics and names.FORGET_QUALITY in no_auc.metrics
    assert IGNORE_INDEX == -100


def test_reference_files(tmp_path, setup):
    bench, data, *_ = setup
    ratios = [0.5] * len(data.forget_eval)
    own = tmp_path / "own.json"
    own.write_text(json.dumps({"forget_truth_ratios": ratios, "privleak_auc": 0.6}))
    assert bench.reference_from_file(own) == {"forget_truth_ratios": ratios, "privleak_auc": 0.6}
    ou = tmp_path / "TOFU_EVAL.json"
    ou.write_text(json.dumps({"forget_truth_ratio": {"value_by_index": {str(i): {"score": r} for i, r in enumerate(ratios)}},
                              "mia_min_k": {"agg_value": 0.7}}))
    assert bench.reference_from_file(ou) == {"forget_truth_ratios": ratios, "privleak_auc": 0.7}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"forget_truth_ratios": ratios, "privleak_auc": 1.5}))
    with pytest.raises(ConfigError, match=r"bad.json.*1.5"):
        bench.reference_from_file(bad)


def test_membership_metrics_have_no_direction():
    table = get_benchmark("tofu").metrics
    with pytest.raises(ConfigError, match="reported, not optimised"):
        table.optuna_direction("mia_loss")
    with pytest.raises(ConfigError, match="best at 0.*abs_privleak"):
        table.tune_mode("privleak")
    assert table.optuna_direction("abs_privleak") == "minimize"


def test_relearn_sets_hold_out_the_other_forget_rows_with_their_reference(setup):
    bench, data, tok, model = setup
    own = bench.evaluate(model, tok, data, CFG, FAST, "self").reference
    n = bench.forget_count(data)
    relearn, heldout = (1,), tuple(i for i in range(n) if i != 1)
    examples, held, ref = bench.relearn_sets(tok, data, CFG, RelearnSplit(relearn, heldout), own)
    assert len(examples) == 1 and len(held.forget) == len(held.forget_eval) == n - 1
    assert [r["question"] for r in held.forget_eval] == [data.forget[i]["question"] for i in heldout]
    assert held.retain_eval == data.retain_eval and held.holdout == data.holdout  # the other sets as they were
    assert ref["forget_truth_ratios"] == [own["forget_truth_ratios"][i] for i in heldout]
    # evaluated on the held-out rows against their own retain ratios: the model is its own reference there
    out = bench.evaluate(model, tok, held, CFG, FAST, ref, utility=False)
    assert out.metrics[names.FORGET_QUALITY] == 1.0 and names.MODEL_UTILITY not in out.metrics
    assert names.RETAIN_PROB not in out.metrics
