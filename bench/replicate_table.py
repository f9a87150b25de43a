"""A replicate table: every point of a beta1 x beta2 grid run for real with a list of seeds, every run's
metrics and per-question forget statistics kept, so that any selection statistic can be scored offline.

    python -m bench.replicate_table --grid 4x4 --seeds 0-9 5000-5019 --out bench/results/replicates_4x4.jsonl \
        [--shard 0/2]

Each run is the embedded default run config (``unlearn.train.config.load_run_config(None, overrides)``:
SatImp-GD, alpha 1, 8 epochs at lr 2e-3 on the generated benchmark) with ``method.beta1``, ``method.beta2``
and ``seed`` set, ``epoch_eval=false`` (one evaluation, after the last epoch, with generation: model
utility needs ROUGE). One JSON line per run is appended to ``--out`` (``--shard i/n``: the i-th of n
interleaved shares, ``--out`` gets ``.i`` before its suffix), so a killed recording resumes where it
stopped and two processes can share the grid. Every line carries the commit and the resolved run config.
``load_table`` reads the lines back (all shards) into ``{point: {seed: run}}``; the retain model's forget
truth ratios (the reference of every distance) are written beside them once (``<out>.reference.json``).

Seeds: the sweeps simulated by ``bench.selection_accuracy`` draw from one pool (``0-9``), the truth is
scored on seeds no sweep draws (``5000-5019``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.search_efficiency import BETA1, BETA2

GRIDS = {"4x4": ((BETA1[1], BETA1[2], BETA1[4], BETA1[5]), (BETA2[0], BETA2[2], BETA2[3], BETA2[5])),  # 1,2,5,8 x 0,.1,.25,1
         "6x6": (BETA1, BETA2)}
Table = dict[str, dict[int, dict[str, Any]]]  # "beta1,beta2" -> seed -> {"final": metrics, "per_item": ...}


def commit() -> str:
    """The working tree's commit (``+dirty`` when it has uncommitted changes to tracked files)."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def parse_seeds(specs: list[str]) -> list[int]:
    """``["0-9", "5000-5019", "42"]`` -> the seeds, in order, each once."""
    out: list[int] = []
    for spec in specs:
        lo, _, hi = spec.partition("-")
        try:
            seeds = range(int(lo), int(hi or lo) + 1)
        except ValueError:
            raise SystemExit(f"--seeds {spec!r}: expected N or N-M (integers)") from None
        out.extend(s for s in seeds if s not in out)
    return out


def shard_path(out: Path, shard: tuple[int, int] | None) -> Path:
    return out if shard is None else out.with_name(f"{out.stem}.{shard[0]}{out.suffix}")


def load_table(out: Path) -> tuple[Table, list[dict[str, Any]]]:
    """Every recorded run of ``out`` and its shards: ``{point: {seed: line}}`` and the lines' headers
    (commit, config) as recorded."""
    table: Table = {}
    lines = []
    for path in sorted({out, *out.parent.glob(f"{out.stem}.*{out.suffix}")}):
        if not path.is_file() or path.name.endswith(".reference.json"):
            continue
        for raw in path.read_text().splitlines():
            if raw.strip():
                line = json.loads(raw)
                table.setdefault(line["point"], {})[int(line["seed"])] = line
                lines.append(line)
    return table, lines


def record(grid: str, seeds: list[int], out: Path, overrides: list[str], shard: tuple[int, int] | None) -> None:
    from unlearn.config import to_dict
    from unlearn.train.config import load_run_config
    from unlearn.train.prepare import prepare
    from unlearn.train.run import run_local

    b1s, b2s = GRIDS[grid]
    jobs = [(b1, b2, s) for s in seeds for b1, b2 in itertools.product(b1s, b2s)]  # seed-major: a partial
    if shard is not None:                                                       # table is balanced
        jobs = jobs[shard[0]::shard[1]]
    path = shard_path(out, shard)
    done, _ = load_table(out)
    head = commit()
    start, ran = time.time(), 0
    with tempfile.TemporaryDirectory() as tmp:
        for b1, b2, s in jobs:
            point = f"{b1},{b2}"
            if s in done.get(point, {}):
                continue
            cfg = load_run_config(None, [*overrides, f"method.beta1={b1}", f"method.beta2={b2}", f"seed={s}",
                                         "epoch_eval=false"])
            ref = out.with_name(out.stem + ".reference.json")
            if not ref.is_file():
                prepared = prepare(cfg, log=lambda m: None)
                ref.write_text(json.dumps({"commit": head, "reference": prepared.reference}, default=float))
            t0 = time.time()
            result = run_local(cfg, Path(tmp) / f"{b1}-{b2}-{s}", log=lambda m: None)
            line = {"point": point, "beta1": b1, "beta2": b2, "seed": s, "final": result.metrics,
                    "per_item": result.per_item, "seconds": round(time.time() - t0, 2), "commit": head,
                    "config": to_dict(cfg)}
            with path.open("a") as f:
                f.write(json.dumps(line, default=float) + "\n")
            ran += 1
            print(f"{point} seed {s}: forget_quality {result.metrics['forget_quality']:.4g} model_utility "
                  f"{result.metrics.get('model_utility', float('nan')):.4f} ({time.time() - start:.0f} s, {ran} runs)",
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--grid", choices=sorted(GRIDS), default="4x4")
    ap.add_argument("--seeds", nargs="+", default=["0-9", "5000-5019"], help="N or N-M, e.g. 0-9 5000-5019")
    ap.add_argument("--out", type=Path, required=True, help="JSON Lines file, appended to (resumable)")
    ap.add_argument("--set", nargs="*", default=[], help="run-config overrides (key=value) of every run")
    ap.add_argument("--shard", help="i/n: run the i-th of n interleaved shares (n processes share the grid)")
    args = ap.parse_args()
    shard = None
    if args.shard:
        try:
            i, n = (int(x) for x in args.shard.split("/"))
        except ValueError:
            raise SystemExit(f"--shard {args.shard!r}: expected i/n, e.g. 0/2") from None
        if not 0 <= i < n:
            raise SystemExit(f"--shard {args.shard!r}: i must be in 0..n-1")
        shard = (i, n)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"commit {commit()}; {' '.join(sys.argv)}", flush=True)
    record(args.grid, parse_seeds(args.seeds), args.out, args.set, shard)


if __name__ == "__main__":
    main()
