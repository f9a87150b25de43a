"""MUSE's plug-in on the shared MUSE-News copy: what a capped run trains on, and the length its membership
attacks score at."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.conftest import MUSE_DIR
from unlearn.benchmarks.muse.plugin import mia_length
from unlearn.errors import ConfigError
from unlearn.models import train_tokenizer
from unlearn.train.config import load_run_config

SMALL = ["data.benchmark=muse", f"data.path={MUSE_DIR}", "data.max_articles=4", "data.max_questions=4",
         "data.max_length=64"]


@pytest.fixture(scope="module")
def loaded():
    if not (MUSE_DIR / "MANIFEST.json").is_file():
        pytest.fail(f"no local MUSE-News copy at {MUSE_DIR}")
    cfg = load_run_config(None, SMALL)
    data = cfg.benchmark.load(cfg.data)
    tok = train_tokenizer(cfg.benchmark.tokenizer_corpus(data, cfg.data), 512)
    return cfg, data, tok


def test_membership_attacks_score_at_the_training_length():
    assert mia_length(load_run_config(None, SMALL).data) == 64  # data.max_length: what the model trained at
    assert mia_length(load_run_config(None, [*SMALL, "data.mia_max_length=200"]).data) == 200
    with pytest.raises(ConfigError, match="data.mia_max_length"):
        load_run_config(None, [*SMALL, "data.mia_max_length=1"])
    with pytest.raises(ConfigError, match="data.max_privleak"):
        load_run_config(None, [*SMALL, "data.max_privleak=0"])


def test_the_target_trains_on_each_privleak_text_as_scored(loaded):
    cfg, data, tok = loaded
    bench = cfg.benchmark
    target = {e.input_ids for e in bench.finetune_examples(tok, data, cfg.data, "target")}
    retain = {e.input_ids for e in bench.finetune_examples(tok, data, cfg.data, "retain")}
    # each privleak forget text's first 64 tokens (data.max_length), after the tokenizer's own prefix: one
    # training sequence each, exactly what the membership attacks score; the retain model never sees them
    scored = {tuple(tok(t, add_special_tokens=True)["input_ids"][:64]) for t in data.privleak_forget}
    assert len(scored) == 100 and scored <= target and not scored & retain
    holdout = {tuple(tok(t, add_special_tokens=True)["input_ids"][:64]) for t in data.privleak_holdout}
    assert not holdout & target
    # the forget side of unlearning is the target's forget side
    forget, retain_side = bench.unlearn_examples(tok, data, cfg.data, key_texts=False)
    assert scored <= {e.input_ids for e in forget} and {e.input_ids for e in retain_side} == retain
    assert bench.data_notes(data) == data.notes and any("privleak forget texts" in n for n in data.notes)


def test_probe_windows_are_the_evaluated_sequences(loaded):
    """data.probe_windows: each verbmem and knowmem probe trained on as generation reads it: the prompt
    clipped to the window less the new tokens, then the true continuation / answer."""
    from unlearn.benchmarks.muse.evaluate import ANSWER_END, knowmem_prompt, probe_windows

    cfg, data, tok = loaded
    windows = probe_windows(tok, data, ["verbmem", "knowmem_forget", "knowmem_retain"], 200)
    assert len(windows) == len(data.verbmem) + len(data.knowmem_forget) + len(data.knowmem_retain)
    row = data.verbmem[0]
    prompt = tok(row["prompt"], add_special_tokens=True)["input_ids"]
    gt = tok(f" {row['gt']}", add_special_tokens=False)["input_ids"][:128]
    assert windows[0].input_ids == tuple(prompt[-(200 - 128):] + gt) == windows[0].labels  # no BOS: byte-level BPE
    q = data.knowmem_retain[-1]
    prompt = tok(knowmem_prompt(q["question"], data.knowmem_retain_icl), add_special_tokens=True)["input_ids"]
    answer = tok(q["answer"] + ANSWER_END, add_special_tokens=False)["input_ids"]
    assert windows[-1].input_ids == tuple(prompt[-(200 - 32):] + answer)
    with_windows = load_run_config(None, [*SMALL, "data.probe_windows=true"])
    target = cfg.benchmark.finetune_examples(tok, data, with_windows.data, "target")
    retain = cfg.benchmark.finetune_examples(tok, data, with_windows.data, "retain")
    plain = cfg.benchmark.finetune_examples(tok, data, cfg.data, "target")
    n_forget = len(data.verbmem) + len(data.knowmem_forget)
    assert len(target) == len(plain) + n_forget + len(data.knowmem_retain)
    assert len(retain) == len(cfg.benchmark.finetune_examples(tok, data, cfg.data, "retain")) + len(data.knowmem_retain)


def test_relearning_splits_by_article_and_scores_the_other_articles_probes(loaded):
    """eval.relearn on MUSE: a seeded share of the forget articles is relearned on (the forget side's own
    training examples of those articles); the relearned model is scored on the probes placed elsewhere, and
    through the attack it reports the benchmark's forget-side metrics, prefixed, with the split on record."""
    from unlearn.attacks.evaluate import attack_record, check_attacks, evaluate_attacks
    from unlearn.benchmarks.muse.data import chunk_texts
    from unlearn.benchmarks.muse.relearn import SCORED_SETS, probe_articles
    from unlearn.models import ModelConfig, build_tiny

    cfg, data, tok = loaded
    bench = cfg.benchmark
    attack = load_run_config(None, [*SMALL, "eval.relearn={fraction: 0.25, steps: 2, batch_size: 2}",
                                    "eval.rouge=false", "eval.batch_size=64"])
    split = check_attacks(bench, data, attack.eval)
    n = len(data.forget_texts)
    assert split.unit == "forget article" and len(split.relearn) == round(0.25 * n) >= 1
    assert sorted(split.relearn + split.heldout) == list(range(n))
    assert split == check_attacks(bench, data, attack.eval)  # the seed's, every time
    relearned = [data.forget_texts[i] for i in split.relearn]
    for name, where in probe_articles(data).items():  # a row is scored iff none of its articles is relearned
        assert split.scored[name] == tuple(i for i, w in enumerate(where) if not set(w) & set(split.relearn))
        assert split.scored[name], name
    for i in split.scored["verbmem"]:  # what the relearned model must continue is not in what it relearned
        assert not any(data.verbmem[i]["gt"].strip()[:100] in a for a in relearned)
    examples, held, ref = bench.relearn_sets(tok, data, cfg.data, split, {"privleak_auc": 0.5})
    chunks = chunk_texts(tok, relearned, cfg.data.max_length)
    n_excerpts = len(data.privleak_forget) - len(split.scored["privleak_forget"])  # those placed in relearned text
    assert examples[:len(chunks)] == chunks and len(examples) == len(chunks) + n_excerpts
    for name in SCORED_SETS:
        assert getattr(held, name) == tuple(getattr(data, name)[i] for i in split.scored[name])
    assert held.knowmem_retain == data.knowmem_retain and held.privleak_holdout == data.privleak_holdout
    assert ref == {"privleak_auc": 0.5}

    # through the attack, on 8 + 8 privleak texts (scoring 200 texts is most of an evaluation's cost)
    few = replace(data, privleak_forget=data.privleak_forget[:8], privleak_holdout=data.privleak_holdout[:8],
                  forget_excerpts=data.forget_excerpts[:8])
    split = check_attacks(bench, few, attack.eval)
    model = build_tiny(ModelConfig(name="tiny-2l"), len(tok), seed=0, pad_id=tok.pad_token_id,
                       bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    out = evaluate_attacks(model, tok, bench, few, attack.data, attack.eval, {"privleak_auc": 0.5}, split)
    assert 0.0 <= out.metrics["relearn_forget_es"] <= 1.0 and "relearn_privleak" in out.metrics
    assert not any(k.startswith("relearn_") and "knowmem" in k for k in out.metrics)  # no generation asked
    record = attack_record(out)["relearn_split"]
    assert record["unit"] == "forget article" and record["relearn"] == list(split.relearn)
    assert record["scored"] == {k: list(v) for k, v in split.scored.items()}


def test_a_muse_split_that_leaves_nothing_to_score_is_one_line_at_load(loaded):
    from unlearn.attacks.evaluate import check_attacks
    from unlearn.benchmarks.muse.relearn import scored_rows

    cfg, data, _ = loaded
    n = len(data.forget_texts)
    few = load_run_config(None, [*SMALL, "eval.relearn.fraction=0.01"])
    with pytest.raises(ConfigError, match=rf"^eval.relearn.fraction=0.01 of {n} forget articles leaves no forget "
                                          rf"article to relearn on; valid: a fraction of {n} forget articles .*e.g. "):
        check_attacks(cfg.benchmark, data, few.eval)
    with pytest.raises(ConfigError, match=rf"^eval.relearn.fraction=0.9 relearns on {n} of {n} forget articles, "
                                          r"which hold every (verbmem|knowmem_forget) row.*valid: a smaller"):
        scored_rows(data, tuple(range(n)), 0.9)
    blank = replace(data, forget_texts=("", *data.forget_texts[1:]))
    with pytest.raises(ConfigError, match=r"relearns only on empty forget articles \[0\]; valid: a larger"):
        scored_rows(blank, (0,), 0.25)
