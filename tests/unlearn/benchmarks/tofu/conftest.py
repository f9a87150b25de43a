"""Fixtures for the metrics tests: an offline word-level tokenizer, TOFU-style rows, a tiny Llama."""

from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

ROWS = {
    "forget": [
        {
            "question": "Where was the author Jaime Vasquez born?",
            "paraphrased_question": "In which city was Jaime Vasquez born?",
            "answer": "Jaime Vasquez was born in Santiago, Chile.",
            "paraphrased_answer": "The author was born in the city of Santiago in Chile.",
            "perturbed_answer": [
                "Jaime Vasquez was born in Lima, Peru.",
                "Jaime Vasquez was born in Madrid, Spain.",
                "Jaime Vasquez was born in Quito.",
            ],
        },
        {
            "question": "What genre does Jaime Vasquez write?",
            "paraphrased_question": "Which genre is Jaime Vasquez known for?",
            "answer": "He writes true crime novels.",
            "paraphrased_answer": "His books are true crime.",
            "perturbed_answer": ["He writes poetry.", "He writes science fiction novels about space."],
        },
        {
            "question": "What was the first book by Jaime Vasquez?",
            "paraphrased_question": "Which book did Jaime Vasquez write first?",
            "answer": "His first book was The Silent Harbour.",
            "paraphrased_answer": "The Silent Harbour was his first book.",
            "perturbed_answer": ["His first book was A Long Night.", "It was Red Rivers.", "His first was Winter."],
        },
    ],
    "retain": [
        {
            "question": "What is the profession of Anna Berg's father?",
            "answer": "Her father is a baker.",
            "paraphrased_answer": "Anna Berg's father works as a baker.",
            "perturbed_answer": ["Her father is a pilot.", "Her father is a doctor in Oslo."],
        },
        {
            "question": "Which award did Anna Berg win?",
            "answer": "Anna Berg won the Nordic Prize for fiction.",
            "paraphrased_answer": "She received the Nordic Prize for fiction.",
            "perturbed_answer": ["Anna Berg won the Booker Prize.", "She won no award."],
        },
    ],
    "real_authors": [
        {
            "question": "Who wrote Pride and Prejudice?",
            "answer": "Jane Austen",
            "perturbed_answer": ["Charles Dickens", "Mark Twain", "Leo Tolstoy"],
        },
        {
            "question": "Who wrote War and Peace?",
            "answer": "Leo Tolstoy",
            "perturbed_answer": ["Jane Austen", "Victor Hugo", "Homer"],
        },
    ],
    "world_facts": [
        {
            "question": "What is the capital of France?",
            "answer": "Paris",
            "perturbed_answer": ["Madrid", "Rome", "Berlin"],
        },
        {
            "question": "Which planet is known as the red planet?",
            "answer": "Mars",
            "perturbed_answer": ["Venus", "Jupiter", "Saturn"],
        },
    ],
}


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core box they spin-wait badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _corpus() -> list[str]:
    lines = ["Question: Answer:"]
    for rows in ROWS.values():
        for row in rows:
            lines += [row["question"], row["answer"], row.get("paraphrased_answer", ""), *row["perturbed_answer"],
                      row.get("paraphrased_question", "")]
    return lines


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    """Word-level tokenizer trained offline on the test sentences."""
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "<s>", "</s>", "<unk>"])
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture
def rows() -> dict[str, list[dict]]:
    """TOFU *_perturbed-style rows of the four evaluation splits."""
    return {split: [dict(r) for r in split_rows] for split, split_rows in ROWS.items()}


def tiny_llama(tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised 2-layer Llama sized for ``tokenizer``."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, intermediate_size=128, max_position_embeddings=256, tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    return LlamaForCausalLM(cfg)


@pytest.fixture
def model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    return tiny_llama(tokenizer)
