"""Naive vs fused LM head + weighted CE: peak memory and time of forward+backward.

    python -m bench.loss_head --json bench/results/loss_head.json

Each (path, vocab) runs in its own subprocess so that peak memory is measured cleanly: on CPU the
peak resident set size above the inputs (``VmHWM`` after resetting it), on CUDA
``torch.cuda.max_memory_allocated`` above the inputs. Both figures include the head-weight gradient
(V x H), which both paths must produce. The naive path is the seed's / open-unlearning's: full
(B, T, V) logits, ``.float()``, shifted copy, ``CrossEntropyLoss(reduction='none')`` on every position,
weights from the detached CE.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def naive_step(hidden, weight, labels):
    """The seed's path: full logits, shift copy, fp32 upcast, CE on all positions, SatImp weights."""
    logits = (hidden @ weight.T).float()
    shift_logits = logits[:, :-1, :].contiguous()
    shift_labels = labels[:, 1:].contiguous()
    ce = torch.nn.CrossEntropyLoss(reduction="none")(shift_logits.view(-1, shift_logits.shape[-1]), shift_labels.view(-1))
    mask = shift_labels.view(-1) != -100
    p = torch.exp(-ce.detach())
    w = p**5.0 * (-torch.expm1(-ce.detach())) ** 0.1
    loss = -(w * ce * mask).sum() / mask.sum()
    loss.backward()
    return loss


def fused_step(hidden, weight, labels):
    from unlearn.losses import fused_weighted_lm_loss

    loss = fused_weighted_lm_loss(hidden, weight, labels, method="satimp", beta1=5.0, beta2=0.1)
    loss.backward()
    return loss


def worker(path: str, vocab: int, tokens: int, hidden_size: int, device: str, reps: int, dtype: str) -> dict:
    torch.manual_seed(0)
    dt = getattr(torch, dtype)
    batch = 4
    seq = tokens // batch
    hidden = (torch.randn(batch, seq, hidden_size, device=device) * 0.5).to(dt).requires_grad_(True)
    weight = (torch.randn(vocab, hidden_size, device=device) * 0.02).to(dt).requires_grad_(True)
    labels = torch.randint(0, vocab, (batch, seq), device=device)
    labels[:, : seq // 2] = -100  # half of the tokens are answer tokens
    step = naive_step if path == "naive" else fused_step
    step(hidden, weight, labels)  # warm-up (kernels, allocator)
    times, peak = [], None
    for i in range(reps):
        hidden.grad = weight.grad = None
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
            base = _rss_kib("VmRSS") * 1024
        t0 = time.perf_counter()
        step(hidden, weight, labels)
        if device == "cuda":
            torch.cuda.synchronize()
            used = torch.cuda.max_memory_allocated() - base
        else:
            used = _rss_kib("VmHWM") * 1024 - base
        times.append(time.perf_counter() - t0)
        peak = used if peak is None else max(peak, used)
    return {"path": path, "vocab": vocab, "tokens": tokens, "hidden": hidden_size, "device": device,
            "dtype": dtype, "time_s": statistics.median(times), "peak_bytes": peak,
            "threads": torch.get_num_threads()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, help="write the figures here")
    ap.add_argument("--tokens", type=int, default=2048)
    ap.add_argument("--hidden", type=int, default=1024)
    ap.add_argument("--vocab", type=int, nargs="+", default=[32000, 128256])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--_worker", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._worker:
        res = worker(args._worker[0], int(args._worker[1]), args.tokens, args.hidden, args.device, args.reps, args.dtype)
        print(json.dumps(res))
        return
    rows = []
    for vocab in args.vocab:
        pair = {}
        for path in ("naive", "fused"):
            cmd = [sys.executable, "-m", "bench.loss_head", "--_worker", path, str(vocab), "--tokens", str(args.tokens),
                   "--hidden", str(args.hidden), "--device", args.device, "--reps", str(args.reps), "--dtype", args.dtype]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ.copy())
            pair[path] = json.loads(out.stdout.strip().splitlines()[-1])
        n, f = pair["naive"], pair["fused"]
        row = {"vocab": vocab, "device": args.device, "dtype": args.dtype, "tokens": args.tokens, "hidden": args.hidden,
               "naive_time_s": n["time_s"], "fused_time_s": f["time_s"],
               "naive_peak_mib": n["peak_bytes"] / 2**20, "fused_peak_mib": f["peak_bytes"] / 2**20,
               "head_grad_mib": vocab * args.hidden * torch.finfo(getattr(torch, args.dtype)).bits / 8 / 2**20,
               "memory_ratio": n["peak_bytes"] / max(1, f["peak_bytes"]), "time_ratio": f["time_s"] / n["time_s"]}
        grad = row["head_grad_mib"]
        row["transient_ratio"] = (row["naive_peak_mib"] - grad) / max(1e-9, row["fused_peak_mib"] - grad)
        rows.append(row)
        print(f"V={vocab:>6} {args.device} {args.dtype}: naive {row['naive_peak_mib']:8.0f} MiB {row['naive_time_s']:.3f} s | "
              f"fused {row['fused_peak_mib']:8.0f} MiB {row['fused_time_s']:.3f} s | memory {row['memory_ratio']:.1f}x less, "
              f"time {row['time_ratio']:.2f}x of naive; head grad alone {row['head_grad_mib']:.0f} MiB, "
              f"beyond it {row['transient_ratio']:.1f}x less")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu ({os.cpu_count()} cores)"
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device_name": device_name, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
