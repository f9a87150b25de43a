"""WMDP's corpora (the shipped fixture, local JSON Lines) and every bad input of its data config, each
raised before anything expensive (no hub access, no model)."""

from __future__ import annotations

import json
import shutil

import pytest

from unlearn.attacks.config import RelearnConfig
from unlearn.attacks.evaluate import check_attacks
from unlearn.benchmarks.config import DataConfig, EvalConfig
from unlearn.benchmarks.wmdp import FIXTURE_DIR, WMDP, WmdpOptions
from unlearn.benchmarks.wmdp.data import load_corpora
from unlearn.config import from_dict
from unlearn.errors import ConfigError, UnknownNameError
from unlearn.models import train_tokenizer

TASKS = FIXTURE_DIR / "tasks"


def _texts(name: str) -> list[str]:
    return [json.loads(x)["text"] for x in (FIXTURE_DIR / f"{name}.jsonl").read_text().splitlines() if x.strip()]


def test_fixture_corpora_load_in_file_order_and_cap():
    c = load_corpora("cyber", str(FIXTURE_DIR))
    assert c.forget_texts == tuple(_texts("cyber-forget-corpus")) and len(c.forget_texts) == 24
    assert c.retain_texts == tuple(_texts("cyber-retain-corpus"))
    capped = load_corpora("bio", str(FIXTURE_DIR), max_documents=5)
    assert capped.forget_texts == tuple(_texts("bio-forget-corpus")[:5]) and len(capped.retain_texts) == 5


def test_plugin_loads_corpora_and_task_index_and_chunks_the_corpora():
    cfg = DataConfig(benchmark="wmdp", path=str(FIXTURE_DIR), max_length=32, options=WmdpOptions(tasks_path=str(TASKS)))
    data = WMDP.load(cfg)
    assert data.corpora.corpus == "cyber"  # the default subset
    assert data.plan == {"wmdp_bio_acc": ("wmdp_bio",), "wmdp_cyber_acc": ("wmdp_cyber",), "mmlu_acc": ("mmlu",)}
    tok = train_tokenizer(WMDP.tokenizer_corpus(data, cfg), 512)
    forget, retain = WMDP.unlearn_examples(tok, data, cfg, key_texts=False)
    stream = tok("\n\n".join(data.corpora.forget_texts), add_special_tokens=False)["input_ids"]
    assert [t for e in forget for t in e.input_ids] == stream  # MUSE's chunking: the stream, tiled
    assert all(len(e.input_ids) <= 32 and e.labels == e.input_ids for e in forget)
    assert len(WMDP.finetune_examples(tok, data, cfg, "target")) > len(WMDP.finetune_examples(tok, data, cfg, "retain"))
    assert len(retain) > 0
    with pytest.raises(ConfigError, match="key-token annotations"):
        WMDP.unlearn_examples(tok, data, cfg, key_texts=True)
    # the relearning attack: a seeded quarter of the forget documents, chunked as unlearning chunks them; every
    # question still asked (the accuracies are not about the corpus's rows)
    relearn = RelearnConfig(fraction=0.25, seed=1)
    split = check_attacks(WMDP, data, EvalConfig(relearn=relearn))
    assert split.unit == "forget document" and len(split.relearn) == 6 and split.scored == {}
    examples, held, ref = WMDP.relearn_sets(tok, data, cfg, split, {})
    texts = "\n\n".join(data.corpora.forget_texts[i] for i in split.relearn)
    assert [t for e in examples for t in e.input_ids] == tok(texts, add_special_tokens=False)["input_ids"]
    assert held is data and ref == {}
    with pytest.raises(ConfigError, match=r"^eval.relearn.fraction=0.01 of 24 forget documents leaves no forget "
                                          r"document to relearn on; valid: a fraction of 24 forget documents"):
        check_attacks(WMDP, data, EvalConfig(relearn=RelearnConfig(fraction=0.01)))


@pytest.mark.parametrize(("values", "match"), [
    ({"corpus": "chem"}, r"unknown WMDP subset 'chem' in data.corpus; valid: bio, cyber"),
    ({"mmlu": "some"}, r"data.mmlu='some' is not valid; valid: full .*, subset"),
    ({"tasks_path": "/nonexistent/tasks"}, r"data.tasks_path='/nonexistent/tasks' is not a directory"),
    ({"retain_split": "retain1"}, r"data.retain_split='retain1' does not apply to WMDP"),
])
def test_bad_wmdp_config_names_the_value(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, {"benchmark": "wmdp", **values})


def test_unknown_subset_is_an_unknown_name():
    with pytest.raises(UnknownNameError, match="bio, cyber"):
        load_corpora("chemistry", None)


@pytest.mark.parametrize(("values", "match"), [
    ({"mmlu": "subset"}, r"data.mmlu='subset' does not apply to benchmark 'generated'"),
    ({"tasks_path": str(TASKS)}, r"data.tasks_path=.* does not apply to benchmark 'generated'"),
    ({"benchmark": "muse", "mmlu": "subset"}, r"data.mmlu='subset' does not apply to MUSE"),
])
def test_wmdp_fields_are_refused_elsewhere(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, values)


def test_the_biology_forget_corpus_needs_a_local_copy(tmp_path):
    """Not on the hub: the error says so (request it from its owners, give data.path) before any download."""
    with pytest.raises(ConfigError, match=r"access-controlled.*request it from its owners.*data.path"):
        load_corpora("bio", None)
    (tmp_path / "bio-retain-corpus.jsonl").write_text('{"text": "x"}\n')
    with pytest.raises(ConfigError, match=r"lacks bio-forget-corpus.jsonl.*access-controlled.*request"):
        load_corpora("bio", str(tmp_path))


def test_local_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"data path '/nonexistent' is not a directory"):
        load_corpora("cyber", "/nonexistent")
    with pytest.raises(ConfigError, match=r"lacks cyber-forget-corpus.jsonl"):
        load_corpora("cyber", str(tmp_path))
    shutil.copy(FIXTURE_DIR / "cyber-forget-corpus.jsonl", tmp_path)
    (tmp_path / "cyber-retain-corpus.jsonl").write_text('{"text": "fine"}\n{"title": "no text"}\n')
    with pytest.raises(ConfigError, match=r"cyber-retain-corpus.jsonl row 1 has no string 'text' \(\['title'\]\)"):
        load_corpora("cyber", str(tmp_path))
    (tmp_path / "cyber-retain-corpus.jsonl").write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(ConfigError, match=r"cyber-retain-corpus.jsonl line 2 is not JSON"):
        load_corpora("cyber", str(tmp_path))
    (tmp_path / "cyber-retain-corpus.jsonl").write_text("\n")
    with pytest.raises(ConfigError, match=r"cyber-retain-corpus.jsonl has no rows"):
        load_corpora("cyber", str(tmp_path))


def test_retain_stats_do_not_apply(tmp_path):
    with pytest.raises(ConfigError, match=r"prepare.retain_stats=.*does not apply to WMDP"):
        WMDP.reference_from_file(tmp_path / "x.json")
