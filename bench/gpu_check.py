"""GPU check (issue 4): FSDP2 SatImp unlearning steps on a ~1 B-parameter Llama, fused vs naive head.

    torchrun --nproc_per_node 1 -m bench.gpu_check --json bench/results/gpu_check.json   # on a CUDA machine
    python -m bench.gpu_check --device cpu --tiny                                         # smoke test of the code path

Builds a randomly initialised Llama config of about 1 B parameters (hidden 2048, 16 layers, vocab
128 256), shards it with FSDP2 (bf16 parameters, fp32 reduction), runs a few SatImp-GD steps with the
fused LM head and with the naive head (full logits), and prints for both: peak memory, step time,
tokens/s and model FLOP utilisation (6 * params * tokens / time / peak bf16 FLOP/s), plus the time of
the head + loss alone against its 6 * N * H * V FLOP limit.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist
from transformers import LlamaConfig, LlamaForCausalLM

from unlearn.losses import build_method, fused_weighted_lm_loss, token_ce
from unlearn.train.module import CausalLMWithLoss
from unlearn.train.strategy import FSDPStrategy

PEAK_BF16_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense spec, per GPU


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_FLOPS.items() if k in name), None)


def build(tiny: bool, device: torch.device) -> torch.nn.Module:
    cfg = LlamaConfig(vocab_size=128256 if not tiny else 1000, hidden_size=2048 if not tiny else 64,
                      num_hidden_layers=16 if not tiny else 2, num_attention_heads=16 if not tiny else 4,
                      num_key_value_heads=8 if not tiny else 4, intermediate_size=5632 if not tiny else 128,
                      max_position_embeddings=4096, tie_word_embeddings=False)
    with torch.device(device):
        model = LlamaForCausalLM(cfg)
    return CausalLMWithLoss(model)


def shard(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The product's own FSDP2 wrapping (each decoder layer and the root; bf16 params, fp32 reduce on GPU)."""
    return FSDPStrategy(device, dist.get_world_size()).wrap(module, trainable=True)


def batch(b: int, t: int, vocab: int, device: torch.device, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator(device="cpu").manual_seed(seed)
    ids = torch.randint(0, vocab, (b, t), generator=g)
    labels = ids.clone()
    labels[:, : t // 2] = -100
    return {k: v.to(device) for k, v in {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}.items()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run(path: str, module, opt, method, batches, device) -> dict:
    loss_path = "chunked" if path == "fused" else "naive"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times, losses = [], []
    for i, (fb, rb) in enumerate(batches):
        sync(device)
        t0 = time.perf_counter()
        f = module(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="term", term=method.forget_term,
                   loss_path=loss_path)
        r = module(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="term", loss_path=loss_path,
                   term=lambda ce, m: method.retain_term(ce=ce, mask=m))
        loss = f.loss + r.loss
        loss.backward()
        losses.append(float(loss.detach()))
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        if i > 0:  # the first step warms up
            times.append(time.perf_counter() - t0)
    step = sorted(times)[len(times) // 2]
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"path": path, "step_s": step, "peak_gib": peak, "losses": losses}


def head_only(device, n: int, h: int, v: int) -> dict:
    """Fused head + loss forward/backward alone (default chunk and three fixed ones), against 6 N H V FLOP."""
    dt = torch.bfloat16 if device.type == "cuda" else torch.float32
    hidden = torch.randn(1, n, h, device=device, dtype=dt, requires_grad=True)
    weight = (torch.randn(v, h, device=device) * 0.02).to(dt).requires_grad_(True)
    labels = torch.randint(0, v, (1, n), device=device)
    out = {}
    paths = [("fused", None)] + [(f"fused_chunk_{c >> 20}M", c) for c in (1 << 22, 1 << 24, 1 << 26, 1 << 28)] + [("naive", None)]
    for path, chunk in paths:
        if device.type == "cuda":
            sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        times = []
        for i in range(7):  # 2 warm-ups, then the median of 5
            hidden.grad = weight.grad = None
            sync(device)
            t0 = time.perf_counter()
            if path.startswith("fused"):
                loss = fused_weighted_lm_loss(hidden, weight, labels, chunk_elements=chunk)
            else:
                ce, mask = token_ce(hidden @ weight.T, labels)
                loss = build_method("satimp").forget_term(ce, mask).loss
            loss.backward()
            sync(device)
            times.append(time.perf_counter() - t0)
        t = sorted(times[2:])[2]
        flops = 6 * n * h * v
        peak = peak_flops(device)
        extra = (torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else None
        out[path] = {"time_s": t, "tflops": flops / t / 1e12, "share_of_peak": flops / t / peak if peak else None,
                     "peak_above_inputs_gib": extra}
        print(f"head + loss alone, {path}: {t * 1e3:.1f} ms, {flops / t / 1e12:.0f} TFLOP/s, "
              f"peak above inputs {extra if extra is None else round(extra, 2)} GiB")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="a tiny model (smoke test on CPU)")
    ap.add_argument("--shapes", nargs="+", default=["8x1024", "16x2048"], help="BATCHxSEQ of the forget and retain batches")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29533")
        os.environ.setdefault("RANK", "0")
        os.environ.setdefault("WORLD_SIZE", "1")
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    device = torch.device(args.device, int(os.environ.get("LOCAL_RANK", 0))) if args.device == "cuda" \
        else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    shapes = [(2, 32)] if args.tiny else [tuple(int(x) for x in s.split("x")) for s in args.shapes]
    method = build_method("satimp", objective="gd")
    results = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
               "torch": torch.__version__, "rows": []}
    h, v = (64, 1000) if args.tiny else (2048, 128256)
    results["head"] = head_only(device, shapes[0][0] * shapes[0][1] // 2, h, v)  # first: a clean allocator
    for b, seq in shapes:
        for path in ("fused", "naive"):
            torch.manual_seed(0)  # both paths start from the same weights: their first losses must agree
            module = shard(build(args.tiny, device), device)
            n_params = sum(p.numel() for p in module.parameters())
            opt = torch.optim.AdamW(module.parameters(), lr=1e-5)
            vocab = module.lm.config.vocab_size
            batches = [(batch(b, seq, vocab, device, 2 * i), batch(b, seq, vocab, device, 2 * i + 1))
                       for i in range(args.steps + 1)]
            tokens = 2 * b * seq  # forget + retain
            try:
                row = run(path, module, opt, method, batches, device)
            except torch.OutOfMemoryError as e:
                row = {"path": path, "oom": str(e).splitlines()[0]}
                print(f"{path:>5} {b}x{seq}: out of GPU memory")
            row.update(batch=b, seq=seq, params=n_params, tokens_per_step=tokens)
            if "step_s" in row:
                row["tokens_per_s"] = tokens / row["step_s"]
                peak = peak_flops(device)
                row["mfu"] = 6 * n_params * tokens / row["step_s"] / (peak * dist.get_world_size()) if peak else None
                print(f"{path:>5} {b}x{seq}: {n_params / 1e9:.2f} B params, step {row['step_s']:.3f} s, "
                      f"{row['tokens_per_s']:.0f} tok/s, peak {row['peak_gib']:.1f} GiB, "
                      f"MFU {row['mfu'] if row['mfu'] is None else round(row['mfu'], 3)}, first loss {row['losses'][0]:.4f}")
            results["rows"].append(row)
            del module, opt, batches
            if device.type == "cuda":
                torch.cuda.empty_cache()
        fused, naive = results["rows"][-2:]
        if "losses" in fused and "losses" in naive:
            rel = abs(fused["losses"][0] - naive["losses"][0]) / max(abs(naive["losses"][0]), 1e-12)
            results.setdefault("first_loss_rel_diff", {})[f"{b}x{seq}"] = rel
            print(f"first-step loss, fused vs naive ({b}x{seq}): relative difference {rel:.2e}")
    if args.json and dist.get_rank() == 0:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
