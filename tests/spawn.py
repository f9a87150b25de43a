"""Spawned worker processes for torch.distributed tests (light: imports nothing beyond torch)."""

from __future__ import annotations


def run_spawned(target, n: int, *args, timeout: float = 300.0) -> list[int | None]:
    """``target(rank, *args)`` in ``n`` spawned processes (a fresh interpreter each, as torch.distributed
    workers need); their exit codes."""
    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, *args)) for r in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=timeout)
    return [p.exitcode for p in procs]
