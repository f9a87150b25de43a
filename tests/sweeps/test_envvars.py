"""scoped_env: library settings in os.environ for one block, restored after it."""

import os

import pytest

from sweeps.envvars import scoped_env


def test_values_hold_inside_the_block_and_the_previous_state_returns(monkeypatch):
    monkeypatch.setenv("UNLEARN_TEST_SET", "user")
    monkeypatch.delenv("UNLEARN_TEST_UNSET", raising=False)
    with pytest.raises(RuntimeError), scoped_env({"UNLEARN_TEST_SET": "ours", "UNLEARN_TEST_UNSET": "1"}):
        assert os.environ["UNLEARN_TEST_SET"] == "ours" and os.environ["UNLEARN_TEST_UNSET"] == "1"
        raise RuntimeError("restored on errors too")
    assert os.environ["UNLEARN_TEST_SET"] == "user" and "UNLEARN_TEST_UNSET" not in os.environ


def test_keep_set_leaves_a_users_value_alone(monkeypatch):
    monkeypatch.setenv("UNLEARN_TEST_SET", "user")
    monkeypatch.delenv("UNLEARN_TEST_UNSET", raising=False)
    with scoped_env({"UNLEARN_TEST_SET": "default", "UNLEARN_TEST_UNSET": "default"}, keep_set=True):
        assert os.environ["UNLEARN_TEST_SET"] == "user" and os.environ["UNLEARN_TEST_UNSET"] == "default"
    assert os.environ["UNLEARN_TEST_SET"] == "user" and "UNLEARN_TEST_UNSET" not in os.environ
