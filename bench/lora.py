"""LoRA against full fine-tuning: peak training memory and step time, then forget quality / model utility.

    OMP_NUM_THREADS=1 python -m bench.lora memory --json bench/results/lora_memory.json
    OMP_NUM_THREADS=1 python -m bench.lora quality --cache-dir /tmp/lora_cache --json bench/results/lora_quality.json

``memory``: each case (model x method x full / LoRA) runs in a fresh Python process: the real loop
(``train_epoch`` on ``CausalLMWithLoss``, AdamW, the chunked LM head, single process, CPU) for a few steps on
synthetic QA-shaped batches (question half masked). Memory is the process's peak resident set size
(``ru_maxrss``, Linux) minus its resident size just before the models are built: weights, the reference,
gradients, optimiser state and activations (not torch's allocator accounting: there is none for CPU). Step
time: the median over steps after the first. Methods: NPO + GD retain (a frozen reference: full fine-tuning
holds a second copy, LoRA switches its adapters off) and SatImp-GD, the default (no reference). Ratios are
full / LoRA, measured in one run.

``quality``: the embedded default (tiny model, generated TOFU-like benchmark) unlearned by the default
method with full fine-tuning and with LoRA over a small learning-rate grid each (the same seeds); each
mode's best setting is the highest forget_quality whose model_utility is at least 0.9 x the target's.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = {  # name -> (hidden, layers, heads, intermediate, vocab, batch, seq)
    "default": (128, 4, 4, 384, 2048, 8, 48),  # the embedded default's tiny preset, its batch size
    "large": (1024, 12, 16, 2816, 32000, 2, 64),  # ~220 M parameters, built from config
}
METHODS = {"npo": {"name": "uniform", "objective": "npo", "alpha": 1.0},
           "satimp_gd": {"name": "satimp", "objective": "gd", "beta1": 5.0, "beta2": 0.1, "alpha": 1.0}}
LORA = {"r": 8, "alpha": 16.0}


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def one_case(model: str, method: str, lora: bool, steps: int) -> dict:
    """Run in its own process: a few training steps; its memory and step time."""
    import peft  # noqa: F401  (imported before the baseline is read: its import is not training memory)
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearn.data.formatting import EncodedQA
    from unlearn.losses import build_method
    from unlearn.models.lora import LoraConfig, apply_lora
    from unlearn.train.config import OptimConfig
    from unlearn.train.loop import UnlearnData, make_optimizer, train_epoch
    from unlearn.train.module import AdaptersOff, CausalLMWithLoss

    hidden, layers, heads, inter, vocab, batch, seq = MODELS[model]
    gen = torch.Generator().manual_seed(0)

    def examples(n: int) -> tuple[EncodedQA, ...]:
        out = []
        for _ in range(n):
            ids = torch.randint(4, vocab, (seq,), generator=gen).tolist()
            out.append(EncodedQA(tuple(ids), tuple([-100] * (seq // 2) + ids[seq // 2:]), 0))
        return tuple(out)

    data = UnlearnData(examples(batch * steps), examples(batch * steps), 0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                         num_key_value_heads=heads, intermediate_size=inter, max_position_embeddings=256,
                         tie_word_embeddings=False)
    m = build_method(**METHODS[method])
    before = _rss_kb()
    torch.manual_seed(0)
    lm = LlamaForCausalLM(config)
    n_params = sum(p.numel() for p in lm.parameters())
    if lora:
        policy = CausalLMWithLoss(apply_lora(lm, LoraConfig(**LORA), seed=0))
        ref = AdaptersOff(policy) if m.needs_reference else None
    else:
        policy = CausalLMWithLoss(lm)
        ref = None
        if m.needs_reference:
            ref = CausalLMWithLoss(LlamaForCausalLM(config)).requires_grad_(False).eval()
            ref.load_state_dict(policy.state_dict())
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    optim = OptimConfig(lr=1e-4, batch_size=batch, loss_path="chunked")
    opt, sched = make_optimizer(policy, optim, total_steps=steps)
    times = []

    for step in range(steps):
        sub = UnlearnData(data.forget[step * batch:(step + 1) * batch], data.retain[step * batch:(step + 1) * batch], 0)
        t0 = time.perf_counter()
        train_epoch(policy, ref, m, sub, opt, sched, optim, seed=0, epoch=step)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"model": model, "method": method, "mode": "lora" if lora else "full", "params": n_params,
            "trainable": trainable, "rss_before_mb": before / 1024, "peak_rss_mb": peak / 1024,
            "train_mem_mb": (peak - before) / 1024, "step_s": statistics.median(times[1:] or times),
            "steps": steps, "batch": batch, "seq": seq, "torch_threads": torch.get_num_threads()}


def memory(args) -> dict:
    rows = []
    for model in args.models:
        for method in METHODS:
            for lora in (False, True):
                cmd = [sys.executable, "-m", "bench.lora", "_case", model, method, str(int(lora)), str(args.steps)]
                out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
                row = json.loads(out.strip().splitlines()[-1])
                rows.append(row)
                print(f"{model:<8} {method:<9} {row['mode']:<4}: params {row['params'] / 1e6:7.1f} M, trainable "
                      f"{row['trainable'] / 1e6:8.3f} M, train memory {row['train_mem_mb']:8.0f} MB (peak RSS "
                      f"{row['peak_rss_mb']:6.0f} MB), step {row['step_s']:7.3f} s", flush=True)
    ratios = {}
    for model in args.models:
        for method in METHODS:
            full, lora = (next(r for r in rows if (r["model"], r["method"], r["mode"]) == (model, method, mode))
                          for mode in ("full", "lora"))
            ratios[f"{model}/{method}"] = {"train_mem_full_over_lora": full["train_mem_mb"] / lora["train_mem_mb"],
                                           "peak_rss_full_over_lora": full["peak_rss_mb"] / lora["peak_rss_mb"],
                                           "step_time_full_over_lora": full["step_s"] / lora["step_s"]}
            r = ratios[f"{model}/{method}"]
            print(f"{model:<8} {method:<9} full / LoRA: train memory x{r['train_mem_full_over_lora']:.2f}, "
                  f"peak RSS x{r['peak_rss_full_over_lora']:.2f}, step time x{r['step_time_full_over_lora']:.2f}")
    return {"rows": rows, "ratios": ratios, "lora": LORA, "models": {m: MODELS[m] for m in args.models}}


def quality(args) -> dict:
    from unlearn.train.config import load_run_config
    from unlearn.train.prepare import prepare, target_metrics
    from unlearn.train.run import run_local

    base = [f"cache_dir={args.cache_dir}"]
    prepared = prepare(load_run_config(None, base), log=print)
    target_mu = target_metrics(load_run_config(None, base), prepared, ["model_utility"])["model_utility"]
    grid = {"full": args.full_lrs, "lora": args.lora_lrs}
    rows = []
    for mode, lrs in grid.items():
        for lr in lrs:
            for seed in args.seeds:
                over = [*base, f"optim.lr={lr}", f"seed={seed}"] + \
                    ([f"model.lora={{r: {LORA['r']}, alpha: {LORA['alpha']}}}"] if mode == "lora" else [])
                t0 = time.perf_counter()
                res = run_local(load_run_config(None, over), Path(args.out_root) / f"{mode}_lr{lr}_s{seed}",
                                log=lambda s: None)
                m = res.metrics
                rows.append({"mode": mode, "lr": lr, "seed": seed, "forget_quality": m["forget_quality"],
                             "model_utility": m["model_utility"], "seconds": time.perf_counter() - t0,
                             "trainable": m.get("params/trainable")})
                print(f"{mode:<4} lr={lr:<7g} seed={seed}: forget_quality {m['forget_quality']:.4g}, model_utility "
                      f"{m['model_utility']:.4g} ({rows[-1]['seconds']:.0f} s)", flush=True)
    best = {}
    for mode in grid:
        by_lr = {}
        for lr in grid[mode]:
            rs = [r for r in rows if r["mode"] == mode and r["lr"] == lr]
            by_lr[lr] = {"forget_quality": statistics.mean(r["forget_quality"] for r in rs),
                         "model_utility": statistics.mean(r["model_utility"] for r in rs)}
        ok = {lr: v for lr, v in by_lr.items() if v["model_utility"] >= 0.9 * target_mu}
        lr = max(ok, key=lambda k: ok[k]["forget_quality"]) if ok else None
        best[mode] = {"lr": lr, **(ok[lr] if lr is not None else {}), "by_lr": by_lr}
        print(f"best {mode}: " + (f"lr={lr}, forget_quality {ok[lr]['forget_quality']:.4g}, model_utility "
                                  f"{ok[lr]['model_utility']:.4g}" if lr is not None else "none keeps utility"))
    return {"rows": rows, "best": best, "target_model_utility": target_mu, "utility_floor": 0.9 * target_mu,
            "lora": LORA}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_case":
        _, _, model, method, lora, steps = sys.argv
        print(json.dumps(one_case(model, method, bool(int(lora)), int(steps))))
        return
    from bench.replicate_table import commit

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory")
    mem.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    mem.add_argument("--steps", type=int, default=4)
    q = sub.add_parser("quality")
    q.add_argument("--cache-dir", default="/tmp/lora_cache")
    q.add_argument("--out-root", default="/tmp/lora_quality")
    q.add_argument("--full-lrs", type=float, nargs="+", default=[1e-3, 2e-3, 4e-3])
    q.add_argument("--lora-lrs", type=float, nargs="+", default=[5e-3, 1e-2, 2e-2])
    q.add_argument("--seeds", type=int, nargs="+", default=[0])
    for s in (mem, q):
        s.add_argument("--json", type=Path)
    args = p.parse_args()
    head = commit()
    print(f"commit {head}; {' '.join(sys.argv)}", flush=True)
    doc = memory(args) if args.what == "memory" else quality(args)
    if args.json:
        args.json.write_text(json.dumps({"commit": head, "argv": sys.argv, "memory_measure": "peak RSS (ru_maxrss)",
                                         **doc}, indent=1))


if __name__ == "__main__":
    main()
