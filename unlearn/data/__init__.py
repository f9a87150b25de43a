"""Data layer: TOFU and the generated benchmark, prompt formatting, encoding and batch planning."""

from unlearn.data.batching import encode_rows, epoch_batches, lm_batches, shard
from unlearn.data.benchmark import (
    BENCHMARKS,
    EVAL_SET_NAMES,
    Benchmark,
    DataConfig,
    load_benchmark,
    split_configs,
    text_corpus,
)
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
from unlearn.data.generated import (
    TEMPLATES,
    general_knowledge_rows,
    general_knowledge_sets,
    generate_benchmark,
    num_forget_authors,
)
from unlearn.data.tofu import CONFIG_NAMES, load_tofu_config, required_columns

__all__ = [
    "BENCHMARKS", "CONFIG_NAMES", "EVAL_SET_NAMES", "IGNORE_INDEX", "TEMPLATES", "Benchmark", "DataConfig",
    "EncodedQA", "PromptFormat", "collate", "encode_answer", "encode_prompt", "encode_qa", "encode_qa_batch",
    "encode_rows",
    "epoch_batches", "general_knowledge_rows", "general_knowledge_sets", "generate_benchmark", "lm_batches",
    "load_benchmark", "load_tofu_config", "num_forget_authors", "required_columns", "shard",
    "split_configs", "text_corpus",
]
