"""Reading and writing the retain model's forget truth ratios (both file formats)."""

from __future__ import annotations

import json

import pytest

from unlearn.errors import ConfigError
from unlearn.benchmarks.tofu.reference import check_retain_stats, retain_stats_from_file, save_retain_stats


def test_open_unlearning_format_is_ordered_by_integer_index(tmp_path):
    path = tmp_path / "TOFU_EVAL.json"
    log = {
        "forget_quality": {"agg_value": None},
        "forget_truth_ratio": {
            "agg_value": 0.6,
            "value_by_index": {"10": {"score": 0.3}, "2": {"score": 1.5}, "0": {"score": 0.7}},
        },
    }
    path.write_text(json.dumps(log))
    assert retain_stats_from_file(path) == [0.7, 1.5, 0.3]


def test_own_format_round_trip(tmp_path):
    path = tmp_path / "nested" / "retain_stats.json"
    save_retain_stats(path, [0.25, 1, 3.5])
    assert json.loads(path.read_text()) == {"forget_truth_ratios": [0.25, 1.0, 3.5]}
    assert retain_stats_from_file(str(path)) == [0.25, 1.0, 3.5]


def test_wrong_length_names_both_numbers():
    check_retain_stats([0.1, 0.2], 2)
    with pytest.raises(ConfigError, match=r"3 truth ratios.*40 questions"):
        check_retain_stats([0.1, 0.2, 0.3], 40)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("not json", "cannot read retain statistics as JSON"),
        ('{"other": 1}', "no retain statistics found"),
        ("[1, 2]", "no retain statistics found"),
        ('{"forget_truth_ratios": "0.5"}', "must be a list"),
        ('{"forget_truth_ratios": []}', "is empty"),
        ('{"forget_truth_ratios": [0.5, "x"]}', r"forget_truth_ratios\[1\]='x' is not a number"),
        ('{"forget_truth_ratio": {"agg_value": 0.5}}', "no 'value_by_index'"),
        ('{"forget_truth_ratio": {"value_by_index": {"a": {"score": 1}}}}', "keys must be integers"),
        ('{"forget_truth_ratio": {"value_by_index": {"0": {"prob": 1}}}}', "lacks 'score'"),
    ],
)
def test_bad_file_names_path_and_expected_layout(tmp_path, content, expected):
    path = tmp_path / "stats.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected) as err:
        retain_stats_from_file(path)
    assert str(path) in str(err.value)
    if "must be a list" not in expected and "keys must be" not in expected:
        assert "forget_truth_ratios" in str(err.value)  # the expected layout is spelled out


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found") as err:
        retain_stats_from_file(tmp_path / "absent.json")
    assert "absent.json" in str(err.value)
