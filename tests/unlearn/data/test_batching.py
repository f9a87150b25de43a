"""Batch planning (deterministic, local RNG, full coverage), sharding, and row encoding."""

from __future__ import annotations

import pytest
import torch

from unlearn.data.batching import encode_rows, epoch_batches, lm_batches, shard
from unlearn.data.formatting import IGNORE_INDEX
from unlearn.errors import ConfigError

ROWS = [
    {"question": "Where was Kalo Renmi born?", "answer": "Kalo Renmi was born in Oslo, Norway."},
    {"question": "What genre does Kalo Renmi write in?", "answer": "Kalo Renmi writes mainly in the horror genre."},
]


def test_epoch_batches_deterministic_and_epoch_dependent():
    a = epoch_batches(23, 50, 4, seed=3, epoch=1)
    assert a == epoch_batches(23, 50, 4, seed=3, epoch=1)
    assert a != epoch_batches(23, 50, 4, seed=3, epoch=2)
    assert a != epoch_batches(23, 50, 4, seed=4, epoch=1)


@pytest.mark.parametrize(("n_forget", "n_retain", "batch_size"), [(23, 50, 4), (16, 144, 8), (5, 3, 4), (1, 1, 1)])
def test_epoch_batches_cover_forget_once_and_pair_equal_sizes(n_forget, n_retain, batch_size):
    batches = epoch_batches(n_forget, n_retain, batch_size, seed=0, epoch=0)
    forget = [i for fb, _ in batches for i in fb]
    assert sorted(forget) == list(range(n_forget))
    assert [len(fb) for fb, _ in batches[:-1]] == [batch_size] * (len(batches) - 1)
    assert len(batches[-1][0]) == n_forget - batch_size * (len(batches) - 1)  # last partial batch kept
    for fb, rb in batches:
        assert len(rb) == len(fb)
        assert all(0 <= i < n_retain for i in rb)
        if n_retain >= batch_size:
            assert len(set(rb)) == len(rb)


def test_retain_coverage_is_balanced():
    batches = epoch_batches(40, 20, 8, seed=1, epoch=0)
    counts = torch.bincount(torch.tensor([i for _, rb in batches for i in rb]), minlength=20)
    assert counts.tolist() == [2] * 20


def test_planning_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    epoch_batches(30, 30, 4, seed=5, epoch=2)
    lm_batches(30, 4, seed=5, epoch=2)
    assert torch.equal(state, torch.get_rng_state())


def test_lm_batches_cover_every_index_once():
    batches = lm_batches(10, 3, seed=0, epoch=0)
    assert [len(b) for b in batches] == [3, 3, 3, 1]
    assert sorted(i for b in batches for i in b) == list(range(10))
    assert batches == lm_batches(10, 3, seed=0, epoch=0) != lm_batches(10, 3, seed=0, epoch=1)


@pytest.mark.parametrize("n", [0, 1, 5, 8, 13])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_shards_concatenate_back_to_the_global_batch(n, world_size):
    batch = list(range(100, 100 + n))
    parts = [shard(batch, r, world_size) for r in range(world_size)]
    assert [i for p in parts for i in p] == batch
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


@pytest.mark.parametrize(("rank", "world_size", "match"), [(2, 2, r"rank=2.*\[0, 1\]"), (0, 0, "world_size=0")])
def test_shard_rejects_bad_rank(rank, world_size, match):
    with pytest.raises(ConfigError, match=match):
        shard([1, 2, 3], rank, world_size)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_forget": 0}, "n_forget=0"), ({"n_retain": 0}, "n_retain=0"), ({"batch_size": 0}, "batch_size=0"),
    ({"seed": -1}, "seed=-1"), ({"epoch": -1}, "epoch=-1"),
])
def test_epoch_batches_rejects_bad_arguments(kwargs, match):
    args = {"n_forget": 4, "n_retain": 4, "batch_size": 2, "seed": 0, "epoch": 0, **kwargs}
    with pytest.raises(ConfigError, match=match):
        epoch_batches(args.pop("n_forget"), args.pop("n_retain"), args.pop("batch_size"), **args)


def test_encode_rows(tokenizer):
    encoded = encode_rows(tokenizer, ROWS, max_length=64, key_texts=["OsloNorway", "horror"])
    assert len(encoded) == 2
    for e, row in zip(encoded, ROWS, strict=True):
        answer_ids = [t for t in e.labels if t != IGNORE_INDEX]
        assert tokenizer.decode(answer_ids[:-1]) == " " + row["answer"]
        assert not any(e.importance[: e.prompt_len]) and not e.importance[-1]  # answer tokens only
    # the authors' rule works on tokens, stripped of the non-ASCII word marker: "ĠOslo" -> "Oslo" counts
    marked = [t for t, m in zip(encoded[0].input_ids, encoded[0].importance) if m]
    assert tokenizer.convert_ids_to_tokens(marked) == ["ĠOslo", "ĠNorway"]
    assert tokenizer.decode([t for t, m in zip(encoded[1].input_ids, encoded[1].importance) if m]).strip() == "horror"
    assert all(e.importance is None for e in encode_rows(tokenizer, ROWS, max_length=64))


def test_encode_rows_errors(tokenizer):
    with pytest.raises(ConfigError, match="key_texts has 1 entries but there are 2 rows"):
        encode_rows(tokenizer, ROWS, max_length=64, key_texts=["Oslo"])
    with pytest.raises(ConfigError, match="row 1 has no string column 'answer'"):
        encode_rows(tokenizer, [ROWS[0], {"question": "q?"}], max_length=64)
