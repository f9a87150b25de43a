"""Corpus-like training chunks for the loop-level tests (test_rmu, test_lora): no model, no files."""

from __future__ import annotations

import torch

from unlearn.data.formatting import EncodedQA


def corpus_chunks(n: int, seed: int, vocab: int) -> tuple[EncodedQA, ...]:
    """``n`` chunks (labels = ids) of different lengths, so that batches are padded; token ids in
    ``3 .. vocab - 1`` (0-2: pad, bos, eos)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        ids = torch.randint(3, vocab, (6 + (3 * i) % 7,), generator=g).tolist()
        out.append(EncodedQA(tuple(ids), tuple(ids), 0))
    return tuple(out)
