"""Encoding rows and planning batches: deterministic from (seed, epoch), never the global RNG.

Batches are planned as index lists over the whole (global) set; a multi-worker run plans the same
global batches on every rank and keeps its own ``shard``, so results do not depend on the worker count.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from unlearn.data.formatting import EncodedQA, PromptFormat, encode_qa_batch
from unlearn.errors import ConfigError, check_range

# Separates the seeds of the forget and retain streams of one epoch.
_STREAM_STRIDE = 1_000_003


def encode_rows(
    tokenizer,
    rows: Sequence[dict],
    *,
    max_length: int,
    fmt: PromptFormat = PromptFormat(),
    key_texts: Sequence[str] | None = None,
) -> list[EncodedQA]:
    """Tokenize each row's ``question``/``answer`` (``encode_qa``, batched).

    Args:
        tokenizer: a Hugging Face tokenizer.
        rows: dicts with ``question`` and ``answer``.
        max_length: the most tokens per example (the answer is truncated, never the prompt).
        fmt: prompt format.
        key_texts: one annotation ``key_text`` per row (``unlearn.data.importance``); when given, each
            example carries ``importance``, True on its key answer tokens.

    Raises:
        ConfigError: a row lacks ``question``/``answer``, or ``key_texts`` has the wrong length.
    """
    check_range("max_length", max_length, low=2)
    if key_texts is not None and len(key_texts) != len(rows):
        raise ConfigError(
            f"key_texts has {len(key_texts)} entries but there are {len(rows)} rows; need one per row"
        )
    for i, row in enumerate(rows):
        for col in ("question", "answer"):
            if not isinstance(row.get(col), str):
                raise ConfigError(f"row {i} has no string column {col!r}; got columns {sorted(row)}")
    return encode_qa_batch(tokenizer, [(row["question"], row["answer"]) for row in rows], max_length=max_length,
                           fmt=fmt, key_texts=key_texts)


def _generator(seed: int, epoch: int, stream: int) -> torch.Generator:
    check_range("seed", seed, low=0)
    check_range("epoch", epoch, low=0)
    return torch.Generator().manual_seed(((seed * _STREAM_STRIDE + epoch) * 2 + stream) % 2**63)


def _cut(order: list[int], batch_size: int) -> list[list[int]]:
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def lm_batches(n: int, batch_size: int, *, seed: int, epoch: int) -> list[list[int]]:
    """One epoch of plain fine-tuning: a seeded permutation of ``range(n)`` cut into batches.

    The last, partial batch is kept, so every index appears exactly once.
    """
    check_range("n", n, low=1)
    check_range("batch_size", batch_size, low=1)
    return _cut(torch.randperm(n, generator=_generator(seed, epoch, 0)).tolist(), batch_size)


def epoch_batches(n_forget: int, n_retain: int, batch_size: int, *, seed: int, epoch: int,
                  ) -> list[tuple[list[int], list[int]]]:
    """The global (forget batch, retain batch) pairs of one unlearning epoch.

    Forget batches cut a seeded permutation of ``range(n_forget)`` (last partial batch kept, so each
    forget index appears once per epoch); each is paired with a retain batch of the same size, taken
    from a stream of seeded permutations of ``range(n_retain)`` (no repeats within a batch when
    ``n_retain >= batch_size``, and balanced coverage of the retain set).

    Returns:
        ``[(forget_indices, retain_indices), ...]``, identical for the same arguments.
    """
    check_range("n_forget", n_forget, low=1)
    check_range("n_retain", n_retain, low=1)
    forget = lm_batches(n_forget, batch_size, seed=seed, epoch=epoch)
    g = _generator(seed, epoch, 1)
    stream: list[int] = []
    while len(stream) < n_forget:
        stream += torch.randperm(n_retain, generator=g).tolist()
    out, start = [], 0
    for fb in forget:
        out.append((fb, stream[start:start + len(fb)]))
        start += len(fb)
    return out


def shard(indices: Sequence[int], rank: int, world_size: int) -> list[int]:
    """Rank ``rank``'s contiguous slice of a global batch; slice sizes differ by at most one.

    The first ``len(indices) % world_size`` ranks get the extra element; a rank may get an empty
    slice when the batch is smaller than ``world_size``.
    """
    check_range("world_size", world_size, low=1)
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank={rank!r} is out of range; valid: [0, {world_size - 1}]")
    base, extra = divmod(len(indices), world_size)
    start = rank * base + min(rank, extra)
    return list(indices[start:start + base + (1 if rank < extra else 0)])
