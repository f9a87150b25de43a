"""Data layer shared by the benchmarks: prompt formatting, encoding, batch planning, key-token masks.

The benchmarks themselves (their rows and loaders) live in ``unlearn.benchmarks``.
"""

from unlearn.data.batching import encode_rows, epoch_batches, lm_batches, shard
from unlearn.data.formatting import (
    IGNORE_INDEX,
    EncodedQA,
    PromptFormat,
    collate,
    encode_answer,
    encode_prompt,
    encode_qa,
    encode_qa_batch,
)

__all__ = [
    "IGNORE_INDEX", "EncodedQA", "PromptFormat", "collate", "encode_answer", "encode_prompt", "encode_qa",
    "encode_qa_batch", "encode_rows", "epoch_batches", "lm_batches", "shard",
]
