"""Prompt formatting: masked prompts, EOS-terminated answers, truncation, key-token masks, collation."""

from __future__ import annotations

import torch

from unlearn.data.formatting import (
    IGNORE_INDEX,
    EncodedQA,
    PromptFormat,
    collate,
    encode_prompt,
    encode_qa,
    encode_qa_batch,
)

QUESTION = "Which award has Kalo Renmi received?"
ANSWER = "Kalo Renmi received the Golden Quill Award for a remarkable body of work."


def test_prompt_is_masked_and_answer_ends_with_eos(tokenizer):
    e = encode_qa(tokenizer, QUESTION, ANSWER, max_length=96)
    prompt = encode_prompt(tokenizer, QUESTION)
    assert list(e.input_ids[: e.prompt_len]) == prompt
    assert prompt[0] == tokenizer.bos_token_id
    assert tokenizer.decode(prompt[1:]) == f"Question: {QUESTION}\nAnswer:"
    assert all(t == IGNORE_INDEX for t in e.labels[: e.prompt_len])
    assert e.labels[e.prompt_len:] == e.input_ids[e.prompt_len:]
    assert e.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(e.input_ids[e.prompt_len:-1]) == " " + ANSWER


def test_no_chat_template_means_plain_format(tokenizer):
    assert encode_prompt(tokenizer, QUESTION, PromptFormat(chat_template=True)) == encode_prompt(
        tokenizer, QUESTION, PromptFormat(chat_template=False))


def test_truncation_keeps_the_prompt(tokenizer):
    full = encode_qa(tokenizer, QUESTION, ANSWER, max_length=96)
    cut = encode_qa(tokenizer, QUESTION, ANSWER, max_length=full.prompt_len + 3)
    assert len(cut.input_ids) == full.prompt_len + 3
    assert cut.prompt_len == full.prompt_len
    assert cut.input_ids == full.input_ids[: full.prompt_len + 3]
    assert cut.input_ids[-1] != tokenizer.eos_token_id


def test_key_text_marks_the_key_tokens(tokenizer):
    e = encode_qa(tokenizer, QUESTION, ANSWER, max_length=96, key_text="GoldenQuillAward")
    assert len(e.importance) == len(e.input_ids)
    assert not any(e.importance[: e.prompt_len])
    marked = [t for t, m in zip(e.input_ids, e.importance, strict=True) if m]
    assert tokenizer.decode(marked).split() == ["Golden", "Quill", "Award"]
    assert not e.importance[-1]  # EOS is never a key token


def test_batch_encoding_equals_one_pair_at_a_time(tokenizer):
    """One tokenizer call for many pairs (repeated questions, truncation, key phrases) changes nothing."""
    pairs = [(QUESTION, ANSWER), (QUESTION, "No award."), ("Where was Kalo Renmi born?", "In Lisbon, Portugal."),
             (QUESTION, ANSWER + " " + ANSWER)]
    phrases = ["GoldenQuillAward", "", "Lisbon", "remarkablebody"]
    batch = encode_qa_batch(tokenizer, pairs, max_length=40, key_texts=phrases)
    for (q, a), p, e in zip(pairs, phrases, batch, strict=True):
        prompt = encode_prompt(tokenizer, q)
        enc = tokenizer(" " + a, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        assert e.input_ids == tuple(prompt + enc)[:40]
        assert e.prompt_len == len(prompt)
        assert e == encode_qa(tokenizer, q, a, max_length=40, key_text=p)
        assert len(e.importance) == len(e.input_ids)
    assert len(batch[3].input_ids) == 40  # truncated
    assert encode_qa_batch(tokenizer, [], max_length=40) == []


def test_collate_pads_with_ignore_index():
    a = EncodedQA((1, 5, 6, 2), (IGNORE_INDEX, IGNORE_INDEX, 6, 2), 2, (False, False, True, False))
    b = EncodedQA((1, 7, 2), (IGNORE_INDEX, 7, 2), 1, (False, True, False))
    out = collate([a, b], pad_id=0)
    assert out["input_ids"].tolist() == [[1, 5, 6, 2], [1, 7, 2, 0]]
    assert out["labels"].tolist() == [[-100, -100, 6, 2], [-100, 7, 2, -100]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert out["importance"].dtype == torch.bool
    assert out["importance"].tolist() == [[False, False, True, False], [False, True, False, False]]
    assert "importance" not in collate([a, EncodedQA(b.input_ids, b.labels, 1)], pad_id=0)


def test_named_prompt_formats_follow_tofu_model_configs(tokenizer):
    from unlearn.data.formatting import PROMPT_FORMATS

    llama, phi = PROMPT_FORMATS["tofu_llama2"], PROMPT_FORMATS["tofu_phi"]
    e = encode_qa(tokenizer, QUESTION, ANSWER, max_length=96, fmt=llama)
    assert e.input_ids[0] == tokenizer.bos_token_id
    assert tokenizer.decode(e.input_ids[1:e.prompt_len]) == f"[INST] {QUESTION} [/INST]"
    assert tokenizer.decode(e.input_ids[e.prompt_len:-1]) == ANSWER  # no lead: SentencePiece adds its own
    e = encode_qa(tokenizer, QUESTION, ANSWER, max_length=96, fmt=phi)
    assert tokenizer.decode(e.input_ids[:e.prompt_len]) == f"Question: {QUESTION}\nAnswer:"  # no BOS
    assert tokenizer.decode(e.input_ids[e.prompt_len:-1]) == " " + ANSWER
    assert PROMPT_FORMATS["auto"] == PromptFormat() and not PROMPT_FORMATS["plain"].chat_template


def test_unknown_prompt_format_is_named():
    import pytest

    from unlearn.benchmarks.config import DataConfig
    from unlearn.config import from_dict
    from unlearn.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match=r"prompt format 'tofu_lama2' in data.prompt_format.*tofu_llama2"):
        from_dict(DataConfig, {"prompt_format": "tofu_lama2"})
