"""The offline byte-level BPE: exact round trip, offsets, special tokens, save/load, determinism."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from unlearn.errors import ConfigError
from unlearn.models.tokenizer import SPECIAL_TOKENS, train_tokenizer

TEXTS = [
    "Kalo Renmi was born in Lisbon, Portugal.",
    "  leading spaces, tabs\tand\nnew lines  ",
    "Unicode: naïve café — 東京 ☃ 'quotes' \"double\"",
    "Zelvin Marquifi won the Golden Quill Award for 'The Silent Harbor'.",
    "",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip_and_offsets(tokenizer, text):
    enc = tokenizer(text, return_offsets_mapping=True)
    assert tokenizer.decode(enc["input_ids"]) == text
    # The byte tokens of one multi-byte character all map to that whole character.
    spans = [s for i, s in enumerate(enc["offset_mapping"]) if i == 0 or s != enc["offset_mapping"][i - 1]]
    assert "".join(text[a:b] for a, b in spans) == text


def test_special_tokens(tokenizer):
    assert (tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token) == SPECIAL_TOKENS
    ids = [tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id]
    assert ids == [0, 1, 2, 3]
    assert not tokenizer.chat_template
    assert tokenizer.padding_side == "right"
    ids = tokenizer("Hello")["input_ids"]
    assert not set(ids) & {0, 1, 2, 3}  # adds no special tokens itself
    assert tokenizer.decode([1, *ids, 2], skip_special_tokens=True) == "Hello"
    assert tokenizer.convert_tokens_to_ids("</s>") == 2 and len(tokenizer("</s>")["input_ids"]) == 1


def test_vocab_is_bounded_and_learned(tokenizer):
    assert 256 + len(SPECIAL_TOKENS) < len(tokenizer) <= 2048
    assert len(tokenizer(" the author")["input_ids"]) <= 3  # common words are merged
    assert len(tokenizer("Question:")["input_ids"]) <= 2 and len(tokenizer("\nAnswer:")["input_ids"]) <= 3


def test_save_and_load_round_trip(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert len(loaded) == len(tokenizer)
    assert loaded.all_special_tokens == tokenizer.all_special_tokens
    assert loaded.pad_token_id == 0 and loaded.eos_token_id == 2
    for text in TEXTS:
        ids = loaded(text)["input_ids"]
        assert ids == tokenizer(text)["input_ids"]
        assert loaded.decode(ids) == text


def test_deterministic_and_vocab_size_respected():
    texts = ["the quick brown fox", "the lazy dog", "quick quick fox"] * 5
    a, b = train_tokenizer(texts, vocab_size=270), train_tokenizer(texts, vocab_size=270)
    assert a.backend_tokenizer.to_str() == b.backend_tokenizer.to_str()
    assert len(a) <= 270


def test_bad_arguments():
    with pytest.raises(ConfigError, match="vocab_size=100"):
        train_tokenizer(["x"], vocab_size=100)
    with pytest.raises(ConfigError, match="at least one text"):
        train_tokenizer([])
