"""Key-token annotations: the authors' rule on real TOFU rows, the shipped files, user files, the generated marks."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from unlearn.data.batching import encode_rows
from unlearn.benchmarks import load_benchmark
from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.tofu import TOFU, TofuOptions
from unlearn.config import from_dict
from unlearn.data.formatting import IGNORE_INDEX, PromptFormat
from unlearn.benchmarks.generated.data import TEMPLATES, generate_benchmark, generate_benchmark_and_key_texts
from unlearn.data.importance import ANNOTATED_TOFU_SPLITS, is_key_token, load_key_texts, packaged_annotation
from unlearn.errors import ConfigError, UnknownNameError
from unlearn.models.tokenizer import train_tokenizer
from unlearn.train.config import load_run_config


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def naive_key_mask(tokenizer, answer: str, key_text: str, lead: str) -> list[bool]:
    """The rule as the authors' loader states it: tokenize the answer on its own, drop non-ASCII
    characters of each token string, keep those of 2+ characters (or numeric) found in key_text."""
    out = []
    for token in tokenizer.tokenize(lead + answer):
        ascii_only = ""
        for ch in token:
            if ord(ch) < 128:
                ascii_only += ch
        long_enough = len(ascii_only) >= 2 or ascii_only.isdigit()
        out.append(bool(ascii_only) and long_enough and key_text.find(ascii_only) >= 0)
    return out


def _metaspace_tokenizer(texts: list[str]) -> PreTrainedTokenizerFast:
    """A SentencePiece-style tokenizer (``▁`` word marker, as Llama's), trained offline on ``texts``."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<pad>", "<s>", "</s>", "<unk>"], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>")


@pytest.fixture(scope="module")
def forget01(tofu_dir) -> list[dict]:
    return _rows(tofu_dir / "forget01.jsonl")


@pytest.fixture(scope="module", params=["byte_level", "metaspace"])
def tofu_tokenizer(request, forget01) -> PreTrainedTokenizerFast:
    texts = [t for r in forget01 for t in (r["question"], r["answer"])]
    return train_tokenizer(texts, vocab_size=1500) if request.param == "byte_level" else _metaspace_tokenizer(texts)


def test_rule_on_token_strings():
    key = "fatherfloristmothergamedeveloper1956"
    assert is_key_token("Ġfather", key) and is_key_token("▁florist", key) and is_key_token("game", key)
    assert not is_key_token("Ġa", key)  # one character, not a number
    assert is_key_token("Ġ9", key) and not is_key_token("Ġ7", key)  # one digit counts when it occurs
    assert not is_key_token("Ġ", key) and not is_key_token("Ã©", key)  # nothing left once non-ASCII is gone
    assert not is_key_token("Father", key)  # case-sensitive, as the authors' substring test
    assert not is_key_token("Ġwas", key)


def test_mask_on_real_tofu_forget01_matches_the_naive_rule(forget01, tofu_tokenizer):
    keys = load_key_texts(packaged_annotation("forget01"), forget01, "forget01")
    encoded = encode_rows(tofu_tokenizer, forget01, max_length=256, key_texts=keys)
    assert len(encoded) == len(forget01) == 40
    marked_rows = 0
    for e, row, key in zip(encoded, forget01, keys, strict=True):
        assert len(e.importance) == len(e.labels) == len(e.input_ids)
        assert not any(e.importance[: e.prompt_len]) and not e.importance[-1]  # prompt and EOS never
        assert all(lab != IGNORE_INDEX for lab, m in zip(e.labels, e.importance) if m)  # only answer tokens
        assert list(e.importance[e.prompt_len:-1]) == naive_key_mask(tofu_tokenizer, row["answer"], key, " ")
        marked_rows += any(e.importance)
    assert marked_rows >= 36  # nearly every answer states its key words verbatim
    # "Basil Mahfouz Al-Kuwaiti's father was a florist and his mother was a game developer."
    e = encoded[3]
    words = tofu_tokenizer.decode([t for t, m in zip(e.input_ids, e.importance) if m])
    for word in ("father", "florist", "mother", "game", "developer"):
        assert word in words


def test_shipped_annotations_are_the_shared_files_and_align_with_tofu(tofu_dir):
    manifest = json.loads(packaged_annotation("forget01").with_name("MANIFEST.json").read_text())
    for split in ANNOTATED_TOFU_SPLITS:
        path = packaged_annotation(split)
        entry = manifest["files"][f"importance_{split}"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        keys = load_key_texts(path, _rows(tofu_dir / f"{split}.jsonl"), split)
        assert len(keys) == entry["rows"] and all(keys)
    with pytest.raises(UnknownNameError, match="forget20"):
        packaged_annotation("forget20")


def test_tofu_benchmark_carries_the_annotations_and_a_user_file_replaces_them(tofu_dir, forget01, tmp_path):
    bench = load_benchmark(DataConfig(benchmark="tofu", path=str(tofu_dir), split="forget01"))
    assert bench.forget_key_texts[3] == "fatherfloristmothergamedeveloper"
    own = tmp_path / "mine.jsonl"
    own.write_text("".join(json.dumps({"question": r["question"], "key_text": "x" + str(i)}) + "\n"
                           for i, r in enumerate(forget01)))
    mine = load_benchmark(DataConfig(benchmark="tofu", path=str(tofu_dir), split="forget01",
                                      options=TofuOptions(importance_path=str(own))))
    assert mine.forget_key_texts == tuple(f"x{i}" for i in range(40))


def test_user_file_errors_name_the_file_and_the_mismatch(forget01, tmp_path):
    path = tmp_path / "ann.jsonl"
    good = [{"question": r["question"], "key_text": "k"} for r in forget01]
    path.write_text("".join(json.dumps(r) + "\n" for r in good[:-1]))
    with pytest.raises(ConfigError, match=rf"{path}: 39 annotation rows but forget01 has 40 rows"):
        load_key_texts(path, forget01, "forget01")
    swapped = [good[1], good[0], *good[2:]]
    path.write_text("".join(json.dumps(r) + "\n" for r in swapped))
    with pytest.raises(ConfigError, match=rf"{path}: row 0 annotates question 'What gender.*forget01 row 0 is"):
        load_key_texts(path, forget01, "forget01")
    path.write_text('{"question": "q", "key": "k"}\n')
    with pytest.raises(ConfigError, match=r"line 1 needs string fields 'question' and 'key_text', got \['key', 'question'\]"):
        load_key_texts(path, forget01, "forget01")
    path.write_text("not json\n")
    with pytest.raises(ConfigError, match="line 1 is not JSON"):
        load_key_texts(path, forget01, "forget01")
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_texts(tmp_path / "missing.jsonl", forget01)
    with pytest.raises(ConfigError, match=r"data.importance_path='/nope.jsonl' is not a file"):
        from_dict(DataConfig, {"importance_path": "/nope.jsonl"})


def test_generated_benchmark_marks_its_key_facts():
    sets, keys = generate_benchmark_and_key_texts(8, len(TEMPLATES), 0)
    assert sets == generate_benchmark(8, len(TEMPLATES), 0)  # same rows, no extra column
    assert all("key_text" not in r for rows in sets.values() for r in rows)
    for split, split_keys in keys.items():
        assert len(split_keys) == len(sets[split])
        for row, key in zip(sets[split], split_keys, strict=True):
            assert key and key in "".join(c for c in row["answer"] if c.isalnum())
    rows = dict(zip(keys["forget10"], sets["forget10"]))
    father = next(k for k, r in rows.items() if r["question"].startswith("What was the profession of the father"))
    assert rows[father]["answer"].endswith((f"worked as a {father}.", f"worked as an {father}."))  # no article
    date = next(k for k, r in rows.items() if r["question"].startswith("When was"))
    assert re.fullmatch(r"\d{1,2}[A-Z][a-z]+\d{4}", date)  # "8May1955"


def test_generated_key_tokens_cover_the_fact(tokenizer):
    bench = load_benchmark(DataConfig(split="forget01"))
    encoded = encode_rows(tokenizer, bench.forget, max_length=96, key_texts=bench.forget_key_texts)
    for e, key in zip(encoded, bench.forget_key_texts, strict=True):
        marked = [t for t, m in zip(e.input_ids, e.importance) if m]
        assert marked, key  # every answer has key tokens
        assert "".join(tokenizer.decode(marked).split()) in key


def test_importance_runs_where_annotations_exist_and_is_refused_elsewhere(tofu_dir, monkeypatch):
    for split in ANNOTATED_TOFU_SPLITS:
        cfg = load_run_config(None, ["data.benchmark=tofu", f"data.split={split}", "method.importance=true"])
        assert cfg.method.importance
    assert load_run_config(None, ["method.importance=true"]).method.importance  # generated
    monkeypatch.setattr(TOFU, "_annotated", ())
    with pytest.raises(ConfigError, match=r"benchmark 'tofu' has none for split 'forget01'.*data.importance_path"):
        load_run_config(None, ["data.benchmark=tofu", "data.split=forget01", "method.importance=true"])
    own = packaged_annotation("forget01")
    cfg = load_run_config(None, ["data.benchmark=tofu", "data.split=forget01", "method.importance=true",
                                 f"data.importance_path={own}"])
    assert cfg.data.options.importance_path == str(own)


def test_prompt_is_never_marked_whatever_the_format(tokenizer):
    bench = load_benchmark(DataConfig(split="forget01"))
    fmt = PromptFormat(question_prefix="Q: ", answer_prefix=" A:")
    for e in encode_rows(tokenizer, bench.forget, max_length=96, fmt=fmt, key_texts=bench.forget_key_texts):
        assert not any(e.importance[: e.prompt_len])
