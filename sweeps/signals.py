"""Stop signals (Ctrl-C, SIGTERM) during a launch or resume: one line and exit 130 / 143, the sweep resumable.

``interruptible`` covers a launch or resume from its checks to its summary: a signal raises
``SweepInterrupted`` at once. ``stop_on_interrupt`` takes over while ``Tuner.fit`` runs: Tune stops
gracefully and saves its state for a resume.
"""

from __future__ import annotations

import shlex
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sweeps.envvars import scoped_env


class SweepInterrupted(Exception):
    """Ctrl-C (SIGINT) or SIGTERM stopped the sweep: its state is saved, ``unlearn-sweep resume DIR``
    continues it; or (``undone``) stopped a launch before its first trial, which removed what it wrote."""

    def __init__(self, out_dir: Path, signum: int = signal.SIGINT, *, undone: bool = False) -> None:
        name = signal.Signals(signum).name
        todo = (" before its first trial; nothing was kept: launch it again (the same --out is accepted)" if undone
                else f"; continue it with: unlearn-sweep resume {shlex.quote(str(out_dir))}")
        super().__init__(f"interrupted ({name}){todo}")
        self.out_dir = out_dir
        self.signum = signum
        self.undone = undone


class Interrupt:
    """Which stop signal (SIGINT, SIGTERM) stopped ``Tuner.fit``; None while none did."""

    signum: int | None = None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what a cluster scheduler sends


@contextmanager
def on_stop_signals(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` for Ctrl-C and SIGTERM (``STOP_SIGNALS``) inside the block, the previous handlers restored
    after it. Outside the main thread nothing is installed: signals reach the main thread only."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


@contextmanager
def interruptible(root: Path) -> Iterator[None]:
    """Ctrl-C or SIGTERM outside ``Tuner.fit`` (checks, Ray's start, prepare, the summary) raises
    SweepInterrupted at once: the CLI says so in one line (exit 130 / 143), rather than a traceback, or
    Ray's ``sys.exit`` and its native stack dump. ``stop_on_interrupt`` takes over while fit runs."""

    def on_signal(signum, frame) -> None:
        raise SweepInterrupted(root, signum)

    with on_stop_signals(on_signal):
        yield


@contextmanager
def stop_on_interrupt() -> Iterator[Interrupt]:
    """Ctrl-C or SIGTERM during ``Tuner.fit``: Tune stops gracefully (stops the trials, saves the experiment
    state for a resume), as its own SIGINT handler would, and the returned object says which signal did
    (Tune's handler keeps that to itself, and ``fit`` returns as if the sweep had ended). A second signal
    stops at once. SIGTERM would otherwise hit Ray's driver handler (``sys.exit`` mid-fit: an abort, trials
    left RUNNING)."""
    interrupt = Interrupt()
    if threading.current_thread() is not threading.main_thread():
        yield interrupt  # signals reach the main thread only; Tune then installs no handler either
        return

    def on_signal(signum, frame) -> None:
        graceful = signal.getsignal(signal.SIGUSR1)  # Tune's graceful stop, installed once fit runs
        if interrupt.signum is not None or not callable(graceful):
            raise KeyboardInterrupt
        interrupt.signum = signum
        graceful(signal.SIGUSR1, frame)

    # Tune leaves SIGINT to on_signal (it still takes SIGUSR1)
    with on_stop_signals(on_signal), scoped_env({"TUNE_DISABLE_SIGINT_HANDLER": "1"}):
        yield interrupt
