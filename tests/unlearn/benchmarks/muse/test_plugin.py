"""MUSE's plug-in on the shared MUSE-News copy: what a capped run trains on, and the length its membership
attacks score at."""

from __future__ import annotations

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
