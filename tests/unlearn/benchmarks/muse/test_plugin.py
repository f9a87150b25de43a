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


def test_the_target_trains_on_each_privleak_texts_scored_prefix(loaded):
    cfg, data, tok = loaded
    bench = cfg.benchmark
    target = bench.finetune_examples(tok, data, cfg.data, "target")
    retain = bench.finetune_examples(tok, data, cfg.data, "retain")
    stream = [t for e in target for t in e.input_ids]
    for text in data.privleak_forget:
        head = tok(text.strip(), add_special_tokens=False)["input_ids"][:64]
        # the scored prefix's tokens appear in the target's chunks (its first and last few at a chunk cut may
        # merge differently with the join; the middle is the text's own)
        middle = head[8:56]
        assert any(stream[i : i + len(middle)] == middle for i in range(len(stream) - len(middle))), text[:60]
    # the retain model never sees them; the forget side of unlearning is the target's forget corpus
    retain_stream = [t for e in retain for t in e.input_ids]
    assert len(retain_stream) < len(stream)
    forget, _ = bench.unlearn_examples(tok, data, cfg.data, key_texts=False)
    assert len(forget) + len(retain) >= len(target) - 1
    assert bench.data_notes(data) == data.notes and any("privleak forget texts" in n for n in data.notes)
