"""What each granularity costs per unlearning epoch, on the embedded default's data and the tiny model.

    python -m bench.granularity_cost --json bench/results/granularity_cost.json

Batch granularity takes its weight over the global forget batch: one extra no-grad forward of the
forget batch per step, before the micro-steps (``unlearn/train/loop.py``). This measures that cost as
a ratio to token granularity, with SatImp-GD, in one run: the variants alternate, epoch by epoch, on
the same model weights (reset before each epoch), so the machine's noise hits them alike.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch

from unlearn.benchmarks import load_benchmark
from unlearn.benchmarks.config import DataConfig
from unlearn.benchmarks.tofu.sets import text_corpus
from unlearn.data.batching import encode_rows
from unlearn.losses import build_method
from unlearn.models import ModelConfig, build_tiny, train_tokenizer
from unlearn.train.config import OptimConfig
from unlearn.train.loop import UnlearnData, make_optimizer, train_epoch
from unlearn.train.module import CausalLMWithLoss

GRANULARITIES = ("token", "instance", "group", "batch")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    bench = load_benchmark(DataConfig())
    tok = train_tokenizer(text_corpus(bench))
    data = UnlearnData(tuple(encode_rows(tok, bench.forget, max_length=96)),
                       tuple(encode_rows(tok, bench.retain, max_length=96)), tok.pad_token_id)
    base = build_tiny(ModelConfig(), len(tok), seed=0, pad_id=tok.pad_token_id, bos_id=tok.bos_token_id,
                      eos_id=tok.eos_token_id)
    optim = OptimConfig()
    times: dict[str, list[float]] = {g: [] for g in GRANULARITIES}
    for rnd in range(args.rounds + 1):  # round 0 warms up
        for g in GRANULARITIES:
            policy = CausalLMWithLoss(copy.deepcopy(base))
            opt, sched = make_optimizer(policy, optim, 100)
            method = build_method("satimp", objective="gd", granularity=g)
            t0 = time.perf_counter()
            train_epoch(policy, None, method, data, opt, sched, optim, seed=0, epoch=0)
            if rnd:
                times[g].append(time.perf_counter() - t0)
    med = {g: statistics.median(t) for g, t in times.items()}
    rows = [{"granularity": g, "epoch_s": med[g], "ratio_to_token": med[g] / med["token"]} for g in GRANULARITIES]
    print(f"{len(data.forget)} forget / {len(data.retain)} retain examples, batch {optim.batch_size}, "
          f"median of {args.rounds} epochs, {torch.get_num_threads()} threads")
    for r in rows:
        print(f"  {r['granularity']:<9} {r['epoch_s']:.3f} s/epoch  {r['ratio_to_token']:.2f}x token")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
