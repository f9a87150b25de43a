"""One owner per sweep directory: the lock held by a real process, refused to a second, freed by a kill.

A sweep driver that launches for real while a second launch and a resume are refused, and SIGTERM:
``tests/sweeps/test_faults.py::test_driver_faults_in_one_sweep_lose_and_duplicate_nothing`` (its step 1).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from sweeps.lock import LOCK_FILE, SweepLockedError, check_unlocked, sweep_lock
from tests.conftest import REPO

HOLD = ("import sys, time; from pathlib import Path; from sweeps.lock import sweep_lock\n"
        "with sweep_lock(Path(sys.argv[1]), action='launch'):\n"
        "    print('held', flush=True); time.sleep(120)\n")


@pytest.fixture
def holder(tmp_path):
    """A real process that holds ``tmp_path``'s lock until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_a_second_owner_is_refused_with_the_holder_named(tmp_path, holder):
    with pytest.raises(SweepLockedError) as e:
        with sweep_lock(tmp_path, action="resume"):
            pass
    msg = str(e.value)
    assert f"pid {holder.pid} on " in msg and f"-c {tmp_path}" in msg  # who, and the command it runs
    assert f"kill -INT {holder.pid}" in msg and f"unlearn-sweep resume {tmp_path}" in msg
    with pytest.raises(SweepLockedError, match="launch into another --out"):
        check_unlocked(tmp_path, action="launch")
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == holder.pid


def test_the_lock_is_free_once_its_holder_is_killed(tmp_path, holder):
    os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the kernel releases the lock
    holder.wait(timeout=10)
    check_unlocked(tmp_path, action="launch")
    with sweep_lock(tmp_path, action="resume"):
        assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: no holder named


def test_checking_a_directory_creates_nothing(tmp_path):
    check_unlocked(tmp_path, action="launch")
    assert list(tmp_path.iterdir()) == []
