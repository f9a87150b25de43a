"""DataConfig validation and the load_benchmark entry point on the generated benchmark."""

from __future__ import annotations

import pytest

from unlearn.config import from_dict
from unlearn.benchmarks import BENCHMARKS, load_benchmark
from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.generated import GeneratedOptions
from unlearn.benchmarks.tofu.sets import EVAL_SET_NAMES, split_configs, text_corpus
from unlearn.errors import ConfigError, UnknownNameError


def test_defaults_load_the_generated_forget10():
    bench = load_benchmark(DataConfig())
    assert bench.name == "generated/forget10"
    assert (len(bench.forget), len(bench.retain), len(bench.holdout), len(bench.full)) == (40, 360, 40, 400)
    assert len(bench.general_knowledge) == 60
    assert list(bench.eval_sets()) == list(EVAL_SET_NAMES)
    assert bench.eval_sets()["forget"] == bench.forget_eval
    assert [r["question"] for r in bench.forget] == [r["question"] for r in bench.forget_eval]
    assert all(isinstance(v, tuple) for v in vars(bench).values() if not isinstance(v, str))


def test_split_configs_pairs():
    assert split_configs("forget05") == {
        "forget": "forget05", "retain": "retain95", "holdout": "holdout05", "full": "full",
        "forget_eval": "forget05_perturbed", "retain_eval": "retain_perturbed",
        "real_authors_eval": "real_authors_perturbed", "world_facts_eval": "world_facts_perturbed",
    }


def test_registry_lists_benchmarks():
    assert BENCHMARKS.names() == ["generated", "muse", "tofu", "wmdp"]
    with pytest.raises(UnknownNameError, match="generated, muse, tofu, wmdp"):
        BENCHMARKS.get("wmdb")


@pytest.mark.parametrize(("values", "match"), [
    ({"benchmark": "muzе"}, "benchmark.*'muzе'.*generated, muse, tofu, wmdp"),
    ({"split": "forget20"}, "forget01, forget05, forget10"),
    ({"benchmark": "muse", "split": "forget10"}, "muse split 'forget10'.*valid: forget"),
    ({"benchmark": "muse", "corpus": "bookz"}, "MUSE corpus 'bookz'.*books, news"),
    ({"corpus": "news"}, "data.corpus='news' does not apply to benchmark 'generated'"),
    ({"benchmark": "muse", "max_articles": 0}, r"max_articles=0"),
    ({"num_authors": 1}, r"num_authors=1.*\[2"),
    ({"qa_per_author": 11}, r"qa_per_author=11.*\[1, 10\]"),
    ({"max_length": 4}, "max_length=4"),
    ({"seed": -1}, "seed=-1"),
    ({"nmu_authors": 3}, "nmu_authors.*did you mean 'num_authors'"),
])
def test_config_errors_name_the_field(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, values)


def test_direct_construction_is_checked_too():
    with pytest.raises(UnknownNameError, match="tofu"):
        DataConfig(benchmark="tof")  # type: ignore[arg-type]


def test_text_corpus_is_unique_deterministic_and_complete():
    cfg = DataConfig(options=GeneratedOptions(num_authors=5, qa_per_author=3, seed=7))
    bench = load_benchmark(cfg)
    corpus = text_corpus(bench)
    assert corpus == text_corpus(load_benchmark(cfg))
    assert len(corpus) == len(set(corpus))
    texts = set(corpus)
    for row in bench.forget_eval + bench.retain_eval + bench.holdout:
        assert row["question"] in texts and row["answer"] in texts
    for row in bench.forget_eval + bench.world_facts_eval:
        assert set(row["perturbed_answer"]) <= texts
    assert all(r["paraphrased_answer"] in texts for r in bench.forget_eval)
    assert f"Question: {bench.forget[0]['question']}\nAnswer:" in texts
    assert not any(t.startswith("Question: ") for t in text_corpus(bench, fmt=None))
