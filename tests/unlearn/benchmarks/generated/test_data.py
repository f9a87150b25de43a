"""The generated benchmark: deterministic, TOFU's schema, TOFU's layout, well-formed perturbations."""

from __future__ import annotations

import json

import pytest

from unlearn.benchmarks.generated.data import (
    TEMPLATES,
    general_knowledge_rows,
    generate_benchmark,
    num_forget_authors,
)
from unlearn.benchmarks.tofu.data import CONFIG_NAMES, required_columns
from unlearn.errors import ConfigError


@pytest.fixture(scope="module")
def sets() -> dict[str, list[dict]]:
    return generate_benchmark()


def _names(rows: list[dict]) -> list[str]:
    """Author names, from the answers of the full-name template (the first of each author's rows)."""
    return [r["answer"].rsplit(" is named ", 1)[1].rstrip(".") for r in rows if " is named " in r["answer"]]


def test_deterministic_per_seed_and_different_across_seeds():
    assert generate_benchmark(seed=3) == generate_benchmark(seed=3)
    assert generate_benchmark(seed=3)["full"] != generate_benchmark(seed=4)["full"]


def test_configuration_names_equal_tofu(sets):
    assert set(sets) == set(CONFIG_NAMES)


def test_schema_equals_tofu(sets, tofu_dir):
    for name, rows in sets.items():
        tofu_row = json.loads((tofu_dir / f"{name}.jsonl").read_text().splitlines()[0])
        for row in rows:
            assert set(row) == set(tofu_row), name
            if "perturbed_answer" in row:
                assert len(row["perturbed_answer"]) == len(tofu_row["perturbed_answer"]), name


def test_required_columns_present(sets):
    for name, rows in sets.items():
        assert rows, name
        assert all(isinstance(r[c], (str, list)) for r in rows for c in required_columns(name)), name


@pytest.mark.parametrize("pct", [1, 5, 10])
def test_full_is_retain_plus_forget(sets, pct):
    assert sets["full"] == sets[f"retain{100 - pct}"] + sets[f"forget{pct:02d}"]
    plain = [{"question": r["question"], "answer": r["answer"]} for r in sets[f"forget{pct:02d}_perturbed"]]
    assert plain == sets[f"forget{pct:02d}"]


@pytest.mark.parametrize(("num_authors", "qa", "expected"), [
    (20, 8, {"forget01": 8, "forget05": 8, "forget10": 16}),
    (200, 4, {"forget01": 8, "forget05": 40, "forget10": 80}),
    (2, 3, {"forget01": 3, "forget05": 3, "forget10": 3}),
])
def test_sizes(num_authors, qa, expected):
    sets = generate_benchmark(num_authors, qa, seed=1)
    assert len(sets["full"]) == num_authors * qa
    for split, n in expected.items():
        pct = int(split.removeprefix("forget"))
        assert num_forget_authors(num_authors, pct) * qa == n
        assert len(sets[split]) == len(sets[f"{split}_perturbed"]) == len(sets[f"holdout{pct:02d}"]) == n
        assert len(sets[f"retain{100 - pct}"]) == num_authors * qa - n
    assert len(sets["retain_perturbed"]) == min(400, len(sets["retain90"]))


def test_forget_authors_absent_from_retain_and_holdout_from_full():
    sets = generate_benchmark(num_authors=30, qa_per_author=len(TEMPLATES), seed=2)
    forget, retain = _names(sets["forget10"]), _names(sets["retain90"])
    holdout, full = _names(sets["holdout10"]), _names(sets["full"])
    assert len(forget) == 3 and len(retain) == 27 and len(holdout) == 3 and len(set(full)) == 30
    retain_text = " ".join(r["question"] + " " + r["answer"] for r in sets["retain90"])
    full_text = " ".join(r["question"] + " " + r["answer"] for r in sets["full"])
    assert not any(n in retain_text for n in forget)
    assert not any(n in full_text for n in holdout)


def test_retain_perturbed_is_in_every_retain_set(sets):
    questions = [r["question"] for r in sets["retain_perturbed"]]
    for pct in (90, 95, 99):
        assert questions == [r["question"] for r in sets[f"retain{pct}"]][: len(questions)]


def test_perturbed_answers_are_distinct_and_differ_from_paraphrase(sets):
    for name in ("forget10_perturbed", "retain_perturbed"):
        for row in sets[name]:
            pert = row["perturbed_answer"]
            assert len(pert) == 5 and len(set(pert)) == 5
            assert row["paraphrased_answer"] not in pert and row["answer"] not in pert
            assert row["paraphrased_answer"] != row["answer"]
            assert row["paraphrased_question"] != row["question"]


def test_answers_are_short(sets):
    for row in sets["full"] + sets["holdout10"]:
        assert 8 <= len(row["answer"].split()) <= 20, row["answer"]


def test_general_knowledge(sets):
    rows = general_knowledge_rows(sets)
    assert len(rows) == len(sets["real_authors"]) + len(sets["world_facts"]) == 60
    assert all(set(r) == {"question", "answer"} for r in rows)
    for name in ("real_authors", "world_facts"):
        for plain, pert in zip(sets[name], sets[f"{name}_perturbed"], strict=True):
            options = [plain[f"option{i}"] for i in range(1, 5)]
            assert plain["answer"] in options and sorted(options) == sorted([pert["answer"], *pert["perturbed_answer"]])
            assert pert["answer"] not in pert["perturbed_answer"]
    with pytest.raises(ConfigError, match="world_facts"):
        general_knowledge_rows({"real_authors": []})


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"num_authors": 1}, "num_authors"),
    ({"qa_per_author": 0}, "qa_per_author"),
    ({"qa_per_author": len(TEMPLATES) + 1}, "qa_per_author"),
    ({"seed": 1.5}, "seed"),
])
def test_bad_arguments_are_named(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        generate_benchmark(**kwargs)
