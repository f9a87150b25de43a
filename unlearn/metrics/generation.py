"""Batched greedy generation and length-sorted batching, shared by the benchmarks' evaluators."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unlearn.errors import ConfigError


def pad_id(tokenizer) -> int:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ConfigError("the tokenizer has neither a pad nor an eos token; set tokenizer.pad_token")
    return int(pad)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), to keep padding small."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def left_pad(prompts: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T) ``input_ids`` and ``attention_mask`` with padding on the left, as generation needs."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[i, width - len(p) :] = 1
    return ids, mask



def greedy_generate(model, tokenizer, prompts: list[list[int]], *, batch_size: int, max_new_tokens: int,
                    device: torch.device) -> list[str]:
    """Greedy continuations of the token-id ``prompts`` (left-padded, length-sorted batches), decoded
    from the new tokens only and stripped, in the order of ``prompts``."""
    pad = pad_id(tokenizer)
    out: list[str] = [""] * len(prompts)
    for idx in length_batches([len(p) for p in prompts], batch_size):
        ids, mask = left_pad([prompts[i] for i in idx], pad)
        gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), do_sample=False,
                             max_new_tokens=max_new_tokens, pad_token_id=pad)
        texts = tokenizer.batch_decode(gen[:, ids.shape[1] :].cpu(), skip_special_tokens=True)
        for i, text in zip(idx, texts):
            out[i] = text.strip()
    return out
