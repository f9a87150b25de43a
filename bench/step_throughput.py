"""Unlearning-step throughput: this project's default path vs the seed's path, same model and batch.

    python -m bench.step_throughput --json bench/results/step_throughput.json

Default path: ``CausalLMWithLoss`` (backbone -> fused LM head + weighted CE on answer tokens only)
with SatImp-GD. Seed path (the SatImp seed code / open-unlearning): HF forward with ``labels`` (full
logits, HF's own loss), then ``CrossEntropyLoss(reduction='none')`` on the shifted full logits, SatImp
weights, plus the retain NLL from a second HF forward with labels. Both do forward + backward + AdamW
step on the same batches; figures are tokens/s (all tokens of forget + retain batches), in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from unlearn.losses import build_method
from unlearn.train.module import CausalLMWithLoss


def seed_step(model, fb, rb, opt):
    out = model(input_ids=fb["input_ids"], attention_mask=fb["attention_mask"], labels=fb["labels"])
    logits = out.logits
    shift_logits = logits[..., :-1, :].contiguous()
    shift_labels = fb["labels"][..., 1:].contiguous()
    ce = torch.nn.CrossEntropyLoss(reduction="none")(shift_logits.view(-1, shift_logits.size(-1)).float(),
                                                      shift_labels.view(-1))
    mask = shift_labels.view(-1) != -100
    p = torch.exp(-ce.detach())
    w = p**5.0 * (1 - p) ** 0.1
    forget = -(w * ce * mask).sum() / mask.sum()
    retain = model(input_ids=rb["input_ids"], attention_mask=rb["attention_mask"], labels=rb["labels"]).loss
    (forget + retain).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def default_step(module, method, fb, rb, opt):
    f = module(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="term", term=method.forget_term)
    r = module(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="term",
               term=lambda ce, m: method.retain_term(ce=ce, mask=m))
    (f.loss + r.loss).backward()
    opt.step()
    opt.zero_grad(set_to_none=True)


def make_batch(batch, seq, vocab, gen):
    ids = torch.randint(4, vocab, (batch, seq), generator=gen)
    labels = ids.clone()
    labels[:, : seq // 2] = -100  # question half masked, as in TOFU-style QA
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def measure(vocab: int, hidden: int, layers: int, batch: int, seq: int, steps: int) -> dict:
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
                      num_key_value_heads=4, intermediate_size=3 * hidden, max_position_embeddings=seq,
                      tie_word_embeddings=False)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batches = [(make_batch(batch, seq, vocab, gen), make_batch(batch, seq, vocab, gen)) for _ in range(steps + 1)]
    method = build_method("satimp", objective="gd")
    out = {"vocab": vocab, "hidden": hidden, "layers": layers, "batch": batch, "seq": seq, "steps": steps}
    for name in ("seed", "default"):
        model = LlamaForCausalLM(cfg)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        module = CausalLMWithLoss(model)
        run = (lambda fb, rb: seed_step(model, fb, rb, opt)) if name == "seed" else \
            (lambda fb, rb: default_step(module, method, fb, rb, opt))
        run(*batches[0])  # warm-up
        times = []
        for fb, rb in batches[1:]:
            t0 = time.perf_counter()
            run(fb, rb)
            times.append(time.perf_counter() - t0)
        out[f"{name}_step_s"] = statistics.median(times)
        out[f"{name}_tokens_per_s"] = 2 * batch * seq / statistics.median(times)
    out["speedup"] = out["default_tokens_per_s"] / out["seed_tokens_per_s"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    rows = [
        measure(vocab=1587, hidden=128, layers=4, batch=8, seq=64, steps=args.steps),    # the `tiny` preset
        measure(vocab=32000, hidden=128, layers=4, batch=8, seq=64, steps=args.steps),   # tiny backbone, Llama-2 vocab
        measure(vocab=128256, hidden=256, layers=2, batch=4, seq=128, steps=args.steps),  # Llama-3 vocab
    ]
    for r in rows:
        print(f"V={r['vocab']:>6} H={r['hidden']} L={r['layers']} B={r['batch']}x{r['seq']}: seed "
              f"{r['seed_tokens_per_s']:8.0f} tok/s, default {r['default_tokens_per_s']:8.0f} tok/s -> "
              f"{r['speedup']:.2f}x")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
