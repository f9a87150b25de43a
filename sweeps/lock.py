"""One owner per sweep directory: an OS file lock that the driver holds for its whole life.

``launch``, ``resume`` and ``sync-mlflow`` take ``DIR/.sweep.lock`` (``fcntl.flock``, exclusive, without
waiting) before they write anything into the directory. The kernel releases the lock when its holder
exits in any way (return, exception, SIGKILL, a lost node's NFS lease), so a lock is never stale: what
decides is the lock, not the file's content. The content says who holds it (PID, host, command, start
time), for the message the second driver prints. The file is never deleted: removing a lock file that
another process has open lets two processes each lock a different inode of the same name.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unlearn.errors import ConfigError

LOCK_FILE = ".sweep.lock"
_ATTEMPTS = 20  # x 25 ms


class SweepLockedError(ConfigError):
    """Another live process owns the sweep directory."""


def holder_info() -> dict[str, Any]:
    """What the lock file says about its holder: this process."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name == "__main__.py":
        argv[0] = "python -m sweeps"
    elif argv:
        argv[0] = Path(argv[0]).name  # unlearn-sweep
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(argv),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def read_holder(root: Path) -> dict[str, Any]:
    """The holder recorded in ``root``'s lock file ({} when it cannot be read)."""
    try:
        doc = json.loads((root / LOCK_FILE).read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "another process (it has not written its name yet)"
    return (f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, since {holder.get('started', '?')}: "
            f"{holder.get('command', '?')}")


def _locked_error(root: Path, action: str) -> SweepLockedError:
    holder = read_holder(root)
    pid = holder.get("pid")
    if action == "sync-mlflow":
        todo = "wait for it to end (a sweep replays its buffered MLflow operations itself)"
    else:
        stop = f"stop it (kill -INT {pid} on {holder.get('host', '?')}: a graceful stop), then " if pid else \
            "stop it, then "
        todo = (f"wait for it to end, or {stop}`unlearn-sweep resume {root}`"
                + ("; or launch into another --out" if action == "launch" else ""))
    return SweepLockedError(f"cannot {action} {root}: the sweep directory is in use by {_describe(holder)}; {todo}")


def check_unlocked(root: Path, *, action: str) -> None:
    """Raise SweepLockedError if a live process holds ``root``'s lock; creates nothing (a check before write).

    ``sweep_lock`` decides; this only lets a command name the owner before its other checks.
    """
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDWR)
    except OSError:
        return  # no lock file (or none that can be opened: sweep_lock will say)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _locked_error(root, action) from None
    finally:
        os.close(fd)


@contextmanager
def sweep_lock(root: Path, *, action: str) -> Iterator[None]:
    """Hold ``root``'s lock for the duration; ``root`` must exist.

    Args:
        action: what the caller is about to do (``launch``, ``resume``, ``sync-mlflow``), for the message.

    Raises:
        SweepLockedError: another live process holds it; the message names the holder and what to do.
    """
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by Ray's processes
    try:
        for attempt in range(_ATTEMPTS):  # another command's check_unlocked holds it for microseconds
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == _ATTEMPTS - 1:
                    raise _locked_error(root, action) from None
                time.sleep(0.025)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder_info()).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # the lock is free: no holder to name (a killed holder's name stays, harmlessly)
    finally:
        os.close(fd)  # releases the lock
