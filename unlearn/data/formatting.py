"""Prompt formatting: question tokens are masked to -100 in the labels, answers end with EOS.

The plain format (``Question: ...\\nAnswer: ...``) is used for tiny models; a tokenizer with a chat
template gets its template when ``PromptFormat.chat_template`` is true.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from unlearn.data.importance import is_key_token

IGNORE_INDEX = -100


@dataclass(frozen=True)
class PromptFormat:
    """How a question/answer pair becomes tokens.

    Plain format: ``[BOS] question_prefix + question + answer_prefix`` is the prompt, and the answer is
    tokenized on its own as ``answer_lead + answer`` (+ EOS), so the answer's tokens never depend on the
    prompt's.
    """

    question_prefix: str = "Question: "
    answer_prefix: str = "\nAnswer:"
    chat_template: bool = True  # use the tokenizer's chat template when it has one
    answer_lead: str = " "  # before the answer in the plain format (a SentencePiece tokenizer adds its own)
    add_bos: bool = True  # prepend the tokenizer's BOS to a plain prompt (when it has one)


# Named formats (``data.prompt_format``). TOFU's and SatImp's config/model_config.yaml: Llama-2 wraps the
# question as "[INST] {question} [/INST]" with no answer tag (its SentencePiece tokenizer starts the
# answer with a word boundary itself, so no lead space), Phi-1.5 as "Question: {question}\nAnswer: "; the
# reference tokenizes the whole text with the tokenizer's own special tokens: BOS for Llama, none for Phi.
PROMPT_FORMATS: dict[str, PromptFormat] = {
    "auto": PromptFormat(),  # the tokenizer's chat template when it has one, else the plain format
    "plain": PromptFormat(chat_template=False),
    "tofu_llama2": PromptFormat(question_prefix="[INST] ", answer_prefix=" [/INST]", chat_template=False,
                                answer_lead=""),
    "tofu_phi": PromptFormat(question_prefix="Question: ", answer_prefix="\nAnswer:", chat_template=False,
                             add_bos=False),
}


@dataclass(frozen=True)
class EncodedQA:
    """One tokenized example. ``labels`` is -100 on the prompt; ``importance`` (aligned with ``labels``)
    is True on the key answer tokens (``unlearn.data.importance``)."""

    input_ids: tuple[int, ...]
    labels: tuple[int, ...]
    prompt_len: int
    importance: tuple[bool, ...] | None = None


def _uses_chat(tokenizer, fmt: PromptFormat) -> bool:
    return bool(fmt.chat_template and getattr(tokenizer, "chat_template", None))


def encode_prompt(tokenizer, question: str, fmt: PromptFormat = PromptFormat()) -> list[int]:
    """Token ids of the prompt that precedes an answer (BOS included), ready for generation."""
    return _encode_prompts(tokenizer, [question], fmt)[question]


def _encode_prompts(tokenizer, questions: Sequence[str], fmt: PromptFormat) -> dict[str, list[int]]:
    """``encode_prompt`` of each distinct question; the plain format in one tokenizer call."""
    unique = list(dict.fromkeys(questions))
    if _uses_chat(tokenizer, fmt):
        return {q: _chat_prompt(tokenizer, q) for q in unique}
    enc = tokenizer([f"{fmt.question_prefix}{q}{fmt.answer_prefix}" for q in unique], add_special_tokens=False)
    bos = [tokenizer.bos_token_id] if fmt.add_bos and tokenizer.bos_token_id is not None else []
    return {q: bos + list(ids) for q, ids in zip(unique, enc["input_ids"])}


def _chat_prompt(tokenizer, question: str) -> list[int]:
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(ids, dict) or hasattr(ids, "input_ids"):
        ids = ids["input_ids"]
    return list(ids)


def encode_answer(tokenizer, answer: str, fmt: PromptFormat = PromptFormat()) -> tuple[list[int], list[tuple[int, int]]]:
    """Answer token ids (EOS appended) and each token's character span within ``answer``."""
    ids = _encode_answers(tokenizer, [answer], fmt)[0]
    lead = _answer_lead(tokenizer, fmt)
    offsets = tokenizer(lead + answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    spans = [(max(0, a - len(lead)), max(0, b - len(lead))) for a, b in offsets]
    if tokenizer.eos_token_id is not None:
        spans.append((len(answer), len(answer)))
    return ids, spans


def _answer_lead(tokenizer, fmt: PromptFormat) -> str:
    return "" if _uses_chat(tokenizer, fmt) else fmt.answer_lead


def _encode_answers(tokenizer, answers: Sequence[str], fmt: PromptFormat) -> list[list[int]]:
    """Answer token ids of each answer, EOS appended (when the tokenizer has one)."""
    lead = _answer_lead(tokenizer, fmt)
    # one call for the whole list: the tokenizer's per-call overhead dominates short answers
    enc = tokenizer([lead + a for a in answers], add_special_tokens=False)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return [list(ids) + eos for ids in enc["input_ids"]]


def encode_qa(
    tokenizer,
    question: str,
    answer: str,
    *,
    max_length: int,
    fmt: PromptFormat = PromptFormat(),
    key_text: str | None = None,
) -> EncodedQA:
    """Tokenize one pair; truncates the answer (never the prompt) to ``max_length`` tokens in all."""
    return encode_qa_batch(tokenizer, [(question, answer)], max_length=max_length, fmt=fmt,
                           key_texts=None if key_text is None else [key_text])[0]


def encode_qa_batch(
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    max_length: int,
    fmt: PromptFormat = PromptFormat(),
    key_texts: Sequence[str] | None = None,
) -> list[EncodedQA]:
    """``encode_qa`` of many (question, answer) pairs: one tokenizer call per list, each prompt once.

    Args:
        key_texts: one annotation ``key_text`` per pair, or None; with it each example carries
            ``importance``: False on the prompt and EOS, the key-token rule on the answer tokens.
    """
    if not pairs:
        return []
    prompts = _encode_prompts(tokenizer, [q for q, _ in pairs], fmt)
    answers = _encode_answers(tokenizer, [a for _, a in pairs], fmt)
    out = []
    for i, ((question, _), ans) in enumerate(zip(pairs, answers)):
        prompt = prompts[question]
        if len(prompt) >= max_length:
            prompt = prompt[: max_length - 1]
        ans = ans[: max_length - len(prompt)]
        importance = None
        if key_texts is not None:
            importance = tuple([False] * len(prompt) + answer_key_mask(tokenizer, ans, key_texts[i]))
        out.append(EncodedQA(tuple(prompt + ans), tuple([IGNORE_INDEX] * len(prompt) + ans), len(prompt), importance))
    return out


def answer_key_mask(tokenizer, ids: Sequence[int], key_text: str) -> list[bool]:
    """The key-token rule (``is_key_token``) on each answer token id; special tokens (EOS) never count.

    Token strings are the tokenizer's own (``convert_ids_to_tokens``), as the authors' rule reads them.
    """
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(ids))
    return [i not in special and is_key_token(t, key_text) for i, t in zip(ids, tokens)]


def collate(examples: Sequence[EncodedQA], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a list of examples into tensors ``input_ids``, ``attention_mask``, ``labels`` (B, T).

    Adds ``importance`` (B, T) bool when every example carries one.
    """
    width = max(len(e.input_ids) for e in examples)
    n = len(examples)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for i, e in enumerate(examples):
        k = len(e.input_ids)
        ids[i, :k] = torch.tensor(e.input_ids)
        labels[i, :k] = torch.tensor(e.labels)
        mask[i, :k] = 1
    out = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    if examples and all(e.importance is not None for e in examples):
        imp = torch.zeros((n, width), dtype=torch.bool)
        for i, e in enumerate(examples):
            imp[i, : len(e.importance)] = torch.tensor(e.importance)
        out["importance"] = imp
    return out
