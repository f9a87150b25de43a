"""A run's failures: out of memory (a worker's memory cap, the advice of what to change), which failures are
worth a restart (a lost worker) and which are not (the run's own errors), and the one line that says why."""

from __future__ import annotations

import re
import resource
from pathlib import Path

from unlearn.errors import UnlearnError
from unlearn.train.config import RunConfig


class OutOfMemoryError(UnlearnError, RuntimeError):
    """A worker ran out of (GPU or host) memory; the message says what to change."""


def oom_advice(cfg: RunConfig, where: str, error: str) -> str:
    micro = cfg.optim.micro_batch_size or -(-cfg.optim.batch_size // cfg.scaling.workers)
    return (f"out of memory on {where} ({error[:200]}) with micro-batches of {micro} sequences x up to "
            f"{cfg.data.max_length} tokens per worker; lower optim.micro_batch_size (now {cfg.optim.micro_batch_size}) "
            f"or optim.batch_size (now {cfg.optim.batch_size}) or data.max_length, use more workers with "
            "scaling.strategy=fsdp, or a smaller model.dtype (bfloat16)"
            + (f", or raise scaling.memory_limit_gb (now {cfg.scaling.memory_limit_gb})"
               if cfg.scaling.memory_limit_gb is not None else ""))


# What a failed allocation says: torch (CPU, CUDA), Python, the OS (mmap), numpy, Ray's serialisation.
# One rule for the worker (which turns such an error into OutOfMemoryError) and the driver (which reads a
# failed run's text).
_OOM_PATTERN = re.compile(r"(?:OutOfMemoryError|MemoryError|out of memory|(?:can't|cannot|unable to|failed to) "
                          r"allocate)[^\n]*", re.IGNORECASE)


def is_allocation_failure(message: str) -> bool:
    """Whether an error message says that memory ran out."""
    return _OOM_PATTERN.search(message) is not None


def limit_worker_memory(gib: float) -> int:
    """Cap this process's further allocations at ``gib`` GiB beyond its current data segment (RLIMIT_DATA).

    Returns the cap in bytes. An allocation beyond it fails (torch: "can't allocate memory"), which the
    worker reports as ``OutOfMemoryError``.
    """
    status = Path("/proc/self/status")
    if not status.is_file():
        raise UnlearnError("scaling.memory_limit_gb needs Linux (/proc/self/status, RLIMIT_DATA); valid on this "
                           "system: scaling.memory_limit_gb=null")
    used_kib = int(re.search(r"^VmData:\s+(\d+) kB", status.read_text(), re.M).group(1))
    cap = used_kib * 1024 + int(gib * 2**30)
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    return cap


def data_limit() -> tuple[int, int]:
    return resource.getrlimit(resource.RLIMIT_DATA)


def restore_data_limit(limits: tuple[int, int]) -> None:
    if resource.getrlimit(resource.RLIMIT_DATA) != limits:
        resource.setrlimit(resource.RLIMIT_DATA, limits)


def lift_memory_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    resource.setrlimit(resource.RLIMIT_DATA, (hard, hard))


# The run's own errors: deterministic, so a run that raised one is never retried.
_OWN_ERRORS = r"(?:DivergedError|ConfigError|UnlearnError|OutOfMemoryError)"


def retryable(summary: str) -> bool:
    """Whether a failed run is worth restarting: a lost worker is, the run's own errors are not."""
    return re.match(_OWN_ERRORS, summary) is None


class RunFailedError(UnlearnError, RuntimeError):
    """A Ray Train run failed; the message is the workers' own error (e.g. a diverged loss). A user error
    for the CLI (one line, exit 2): what the message names is for the user to change."""


def failure_summary(cfg: RunConfig, text: str, *, in_process: bool = False) -> str:
    """The most telling line of a failed run's error text: this package's errors first, an allocation
    failure anywhere as ``OutOfMemoryError`` with advice, else the last line (Ray's error text), or the
    first (``in_process``: ``"Type: message"`` of an error the run raised in this process)."""
    ours = re.findall(f"({_OWN_ERRORS}[^\n]*)", text)
    lines = [line for line in text.splitlines() if line.strip()]
    summary = ours[-1] if ours else (lines[0 if in_process else -1] if lines else "the run failed without a message")
    oom = _OOM_PATTERN.search(text)
    if oom and "OutOfMemoryError" not in summary:
        # ran out of memory outside the training code (Ray's serialisation, a library): same advice
        return f"OutOfMemoryError: {oom_advice(cfg, 'a worker', oom.group(0))}"
    if not in_process and retryable(summary) and cfg.scaling.memory_limit_gb is not None:
        # a worker that dies without a Python error under its memory cap most likely ran out of it in native
        # code (an allocation failure aborts there); ``may_be_lost`` tells it apart for a retry
        return f"OutOfMemoryError: {oom_advice(cfg, 'a worker', f'{DIED_UNDER_CAP}: {summary}')}"
    return summary


DIED_UNDER_CAP = "it died under its memory cap"


def may_be_lost(summary: str) -> bool:
    """Whether a run reported out of memory may instead have lost its worker: one that died without a Python
    error under its memory cap (``failure_summary``) looks the same as one killed from outside (a preemption,
    a kill). Such a run is retried as a lost worker would be; out of memory for real, it dies again and,
    once the retries are spent, is reported as out of memory."""
    return summary.startswith("OutOfMemoryError") and DIED_UNDER_CAP in summary
