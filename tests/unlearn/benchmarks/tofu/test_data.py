"""TOFU loading from the local JSON-lines copy: every configuration, row counts, column checks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearn.benchmarks import load_benchmark
from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.tofu.data import CONFIG_NAMES, load_tofu_config, required_columns
from unlearn.errors import ConfigError, UnknownNameError


def _manifest(tofu_dir: Path) -> dict[str, dict]:
    return json.loads((tofu_dir / "MANIFEST.json").read_text())


def test_every_jsonl_loads_with_manifest_row_counts(tofu_dir):
    manifest = _manifest(tofu_dir)
    files = sorted(tofu_dir.glob("*.jsonl"))
    assert {f.stem for f in files} == set(manifest) == set(CONFIG_NAMES)
    for file in files:
        rows = load_tofu_config(file.stem, tofu_dir)
        assert len(rows) == manifest[file.stem]["rows"], file.name
        for col in required_columns(file.stem):
            assert all(r[col] is not None for r in rows)


def test_required_columns_by_configuration():
    assert required_columns("full") == ("question", "answer")
    assert required_columns("world_facts_perturbed") == ("question", "answer", "perturbed_answer")
    for name in ("forget05_perturbed", "retain_perturbed"):
        assert required_columns(name) == ("question", "answer", "perturbed_answer", "paraphrased_answer")


def _copy_without(tofu_dir: Path, tmp_path: Path, name: str, column: str, rows: slice) -> Path:
    lines = (tofu_dir / f"{name}.jsonl").read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        row = json.loads(line)
        if i in range(len(lines))[rows]:
            row.pop(column)
        out.append(json.dumps(row))
    (tmp_path / f"{name}.jsonl").write_text("\n".join(out) + "\n")
    return tmp_path / f"{name}.jsonl"


@pytest.mark.parametrize("rows", [slice(None), slice(3, 4)], ids=["whole-column", "one-row"])
def test_missing_column_names_file_and_column(tofu_dir, tmp_path, rows):
    file = _copy_without(tofu_dir, tmp_path, "forget01_perturbed", "paraphrased_answer", rows)
    with pytest.raises(ConfigError, match="paraphrased_answer") as err:
        load_tofu_config("forget01_perturbed", tmp_path)
    assert str(file) in str(err.value)


def test_perturbed_answer_must_be_a_list(tmp_path):
    row = {"question": "q?", "answer": "a", "perturbed_answer": "not a list"}
    (tmp_path / "world_facts_perturbed.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(ConfigError, match="perturbed_answer.*list"):
        load_tofu_config("world_facts_perturbed", tmp_path)


def test_json_array_file_is_accepted(tofu_dir, tmp_path):
    rows = [json.loads(line) for line in (tofu_dir / "holdout01.jsonl").read_text().splitlines()]
    (tmp_path / "holdout01.json").write_text(json.dumps(rows))
    assert load_tofu_config("holdout01", tmp_path) == rows


def test_unknown_configuration_lists_valid_ones(tmp_path):
    with pytest.raises(UnknownNameError, match="forget10_perturbed") as err:
        load_tofu_config("forget1", tmp_path)
    assert "did you mean" in str(err.value)


def test_missing_directory_and_file_are_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match=str(missing)):
        load_tofu_config("full", missing)
    with pytest.raises(ConfigError, match="full.jsonl"):
        load_tofu_config("full", tmp_path)


def test_load_benchmark_forget01_pairs_retain99_and_holdout01(tofu_dir):
    bench = load_benchmark(DataConfig(benchmark="tofu", path=str(tofu_dir), split="forget01"))
    sizes = {k: len(v) for k, v in vars(bench).items() if isinstance(v, tuple)}
    assert sizes == {
        "forget": 40, "retain": 3960, "holdout": 40, "full": 4000, "forget_eval": 40, "retain_eval": 400,
        "real_authors_eval": 100, "world_facts_eval": 117, "general_knowledge": 0, "forget_key_texts": 40,
    }
    assert bench.name == "tofu/forget01"
    assert [r["question"] for r in bench.forget] == [r["question"] for r in bench.forget_eval]
    assert [r["question"] for r in bench.retain + bench.forget] == [r["question"] for r in bench.full]
    assert all(len(r["perturbed_answer"]) == 5 for r in bench.forget_eval)


@pytest.mark.parametrize(("content", "pattern"), [
    ("", r"forget01.jsonl is empty; expected one JSON object per line with question, answer"),
    ("\n  \n", r"forget01.jsonl is empty"),
    ('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": \n{"question": "q3", "answer": "c"}\n',
     r"forget01.jsonl line 2 is not JSON \(Expecting value\); expected one JSON object per line"),
])
def test_an_unreadable_local_file_says_where_and_what(tmp_path, content, pattern):
    (tmp_path / "forget01.jsonl").write_text(content)
    with pytest.raises(ConfigError, match=pattern) as info:
        load_tofu_config("forget01", tmp_path)
    assert "StopIteration" not in str(info.value) and "DatasetGenerationError" not in str(info.value)
