"""Each benchmark's options: flat keys routed to its plug-in's type, and the flat record of before."""

from __future__ import annotations

import pytest

from sweeps.space.keys import run_config_keys
from unlearn.benchmarks import BENCHMARKS
from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.generated import GeneratedOptions
from unlearn.benchmarks.muse import MuseOptions
from unlearn.benchmarks.tofu import TofuOptions
from unlearn.benchmarks.wmdp import WmdpOptions
from unlearn.config import from_dict, to_dict
from unlearn.errors import ConfigError
from unlearn.train.config import load_run_config

# What to_dict wrote for these configs before the options moved to the plug-ins: recorded configs and the
# prepare cache key (a hash of this mapping) stay the same (plus MUSE's options of issue 30 at their defaults:
# max_privleak, mia_max_length, probe_windows).
NOT_SET = {"benchmark": None, "path": None, "split": None, "num_authors": 40, "qa_per_author": 10, "seed": 0,
           "max_length": 96, "importance_path": None, "prompt_format": "auto", "corpus": None, "retain_split": None,
           "max_articles": None, "max_questions": None, "max_privleak": None, "mia_max_length": None,
           "probe_windows": False, "tasks_path": None, "mmlu": "full"}
RECORDED = [
    (["data.num_authors=8", "data.seed=3"],
     {**NOT_SET, "benchmark": "generated", "split": "forget10", "num_authors": 8, "seed": 3}),
    (["data.benchmark=tofu", "data.split=forget01", "data.prompt_format=tofu_phi", "data.max_length=500"],
     {**NOT_SET, "benchmark": "tofu", "split": "forget01", "prompt_format": "tofu_phi", "max_length": 500}),
    (["data.benchmark=muse", "data.corpus=books", "data.max_articles=8", "data.max_questions=4", "data.max_length=128"],
     {**NOT_SET, "benchmark": "muse", "split": "forget", "corpus": "books", "max_articles": 8, "max_questions": 4,
      "max_length": 128}),
    (["data.benchmark=wmdp", "data.mmlu=subset", "data.max_articles=16", "data.retain_split=null"],
     {**NOT_SET, "benchmark": "wmdp", "split": "forget", "mmlu": "subset", "max_articles": 16}),
]


@pytest.mark.parametrize(("overrides", "expected"), RECORDED)
def test_to_dict_writes_the_flat_data_mapping_of_before(overrides, expected):
    cfg = load_run_config(None, overrides)
    assert to_dict(cfg)["data"] == expected
    assert from_dict(DataConfig, expected) == cfg.data  # a recorded config reads back


def test_flat_keys_go_to_the_benchmarks_options_type():
    cases = {"generated": GeneratedOptions(num_authors=8, seed=3), "tofu": TofuOptions(prompt_format="tofu_phi"),
             "muse": MuseOptions(corpus="books", max_articles=8, max_questions=4), "wmdp": WmdpOptions(mmlu="subset",
                                                                                                  max_articles=16)}
    for (overrides, _), (name, options) in zip(RECORDED, cases.items()):
        data = load_run_config(None, overrides).data
        assert (data.benchmark, data.options) == (name, options)
        assert BENCHMARKS.get(name).options_type is type(options)


@pytest.mark.parametrize(("values", "match"), [
    ({"benchmark": "tofu", "max_articles": 8}, r"data.max_articles=8 does not apply to benchmark 'tofu': it is an "
     r"option of benchmarks 'muse' and 'wmdp'; valid options of 'tofu': importance_path, prompt_format$"),
    ({"benchmark": "muse", "num_authors": 8}, r"data.num_authors=8 does not apply to MUSE: it is an option of "
     r"benchmark 'generated'; valid options of 'muse': corpus, retain_split, max_articles, max_questions, "
     r"max_privleak, mia_max_length, probe_windows$"),
    ({"benchmark": "wmdp", "prompt_format": "plain"}, r"option of benchmarks 'generated' and 'tofu'"),
    ({"benchmark": "muse", "max_artcles": 8}, r"unknown key 'max_artcles' \(did you mean 'max_articles'\?\); valid "
     r"keys: benchmark, path, split, max_length, corpus, retain_split, max_articles, max_questions, max_privleak, "
     r"mia_max_length, probe_windows$"),
    ({"benchmark": "tofu", "options": {}}, r"unknown key 'options'"),
    ({"benchmark": "muse", "max_questions": "many"}, r"max_questions must be an integer, got 'many'"),
])
def test_an_option_of_another_benchmark_names_its_owners(values, match):
    with pytest.raises(ConfigError, match=match):
        from_dict(DataConfig, values)


def test_through_a_run_config_the_error_names_the_dotted_key():
    with pytest.raises(ConfigError, match=r"^data.mmlu='subset' does not apply to benchmark 'tofu'"):
        load_run_config(None, ["data.benchmark=tofu", "data.mmlu=subset"])


def test_options_of_another_benchmarks_type_are_refused():
    with pytest.raises(ConfigError, match=r"data.options is a MuseOptions, not benchmark 'tofu''s; valid: a TofuOptions"):
        DataConfig(benchmark="tofu", options=MuseOptions())
    assert DataConfig(benchmark="muse").options == MuseOptions()  # None: the benchmark's defaults


def test_path_options_are_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "tasks").mkdir()
    monkeypatch.chdir(tmp_path)
    assert WmdpOptions(tasks_path="tasks").tasks_path == str(tmp_path / "tasks")


def test_a_space_may_name_every_benchmarks_options():
    keys = run_config_keys()
    data = {k.removeprefix("data."): v for k, v in keys.items() if k.startswith("data.")}
    assert list(data) == ["benchmark", "path", "split", "max_length", "importance_path", "prompt_format",
                          "num_authors", "qa_per_author", "seed", "corpus", "retain_split", "max_articles",
                          "max_questions", "max_privleak", "mia_max_length", "probe_windows", "tasks_path", "mmlu"]
    assert (data["max_articles"], data["mmlu"], data["num_authors"]) == (int | None, str, int)
