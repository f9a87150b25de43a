"""The quantization attack catches knowledge that is hidden, not forgotten.

A tiny model memorises a few forget answers; then each of its converted Linear weights is pushed, by
projected gradient ascent on the forget NLL, anywhere inside its own 4-bit quantization cell (the interval
that rounds to the same FP4 code, computed here from the code table written out, blocks of 64, each block's
largest weight left in place). The plain evaluation then says "forgotten"; 4-bit quantization rounds every
weight back to the code the memorising model had, and the q4 metrics say "restored".
"""

from __future__ import annotations

import torch
from torch import nn

from unlearn.attacks.evaluate import check_attacks, evaluate_attacks
from unlearn.attacks.quantize import quantized_copy
from unlearn.data.formatting import collate
from unlearn.metrics.generation import pad_id
from unlearn.models.load import build_tiny
from unlearn.train.config import load_run_config

# bitsandbytes' FP4 values: the E2M1 magnitudes over 6 (0, 1/6 ... 1), its smallest non-zero one 1/192
FP4 = torch.tensor(sorted({s * m for m in (0.0, 1 / 192, 1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0) for s in (1, -1)}))
BLOCK = 64


def fp4_cells(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per weight: the low and high end of the values that round to its FP4 code (nearest code of
    w / absmax, blocks of 64 in row-major order), and whether it is its block's largest magnitude."""
    flat = w.reshape(-1)
    n = flat.numel()
    blocks = torch.nn.functional.pad(flat, (0, (-n) % BLOCK)).reshape(-1, BLOCK)
    absmax = blocks.abs().amax(1, keepdim=True)
    code = (blocks / absmax).unsqueeze(-1).sub(FP4).abs().argmin(-1)
    edges = torch.cat([torch.tensor([-1.0]), (FP4[1:] + FP4[:-1]) / 2, torch.tensor([1.0])])
    unpack = lambda t: t.reshape(-1)[:n].reshape(w.shape)
    return unpack(edges[code] * absmax), unpack(edges[code + 1] * absmax), unpack(blocks.abs() == absmax)


def forget_nll(lm: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"]).loss


def hide(lm: nn.Module, batch: dict[str, torch.Tensor], steps: int = 12) -> None:
    """Raise the forget NLL by moving each converted weight within its FP4 cell (5 % of the cell kept as margin)."""
    linears = {n: m for n, m in lm.named_modules() if type(m) is nn.Linear and n != "lm_head"}
    cells = {n: fp4_cells(m.weight.detach()) for n, m in linears.items()}
    for _ in range(steps):
        lm.zero_grad()
        forget_nll(lm, batch).backward()
        with torch.no_grad():
            for n, m in linears.items():
                lo, hi, top = cells[n]
                width = hi - lo
                moved = m.weight + 0.25 * width * m.weight.grad.sign()
                moved = torch.minimum(torch.maximum(moved, lo + 0.05 * width), hi - 0.05 * width)
                m.weight.copy_(torch.where(top, m.weight, moved))


def test_quantization_restores_knowledge_hidden_below_half_a_step(tokenizer, tmp_path):
    cfg = load_run_config(None, [f"cache_dir={tmp_path}", "model.name=tiny-2l", "data.num_authors=8",
                                 "data.qa_per_author=4", "eval.rouge=false", "eval.quant.bits=[4]"])
    bench = cfg.benchmark
    data = bench.load(cfg.data)
    forget, _ = bench.unlearn_examples(tokenizer, data, cfg.data, key_texts=False)
    batch = collate(forget, pad_id(tokenizer))
    torch.manual_seed(0)
    lm = build_tiny(cfg.model, len(tokenizer), seed=0, pad_id=pad_id(tokenizer), bos_id=tokenizer.bos_token_id,
                    eos_id=tokenizer.eos_token_id)
    opt = torch.optim.AdamW(lm.parameters(), lr=3e-3)
    for _ in range(60):  # memorise the forget answers
        opt.zero_grad()
        forget_nll(lm, batch).backward()
        opt.step()
    lm.eval()

    def forget_prob(model: nn.Module) -> float:
        return bench.evaluate(model, tokenizer, data, cfg.data, cfg.eval, None, utility=False).metrics["forget_prob"]

    known = forget_prob(lm)
    hide(lm, batch)
    lm.eval()
    hidden = forget_prob(lm)
    attacked = evaluate_attacks(lm, tokenizer, bench, data, cfg.data, cfg.eval, None, check_attacks(bench, data, cfg.eval))
    restored = attacked.metrics["q4_forget_prob"]
    # measured: memorised 0.95, hidden 0.012, back to 0.95 under 4 bits (every weight rounds to the code the
    # memorising model's does): wide margins on each side
    assert known > 0.5
    assert hidden < 0.1 * known
    assert restored > 0.7 * known
    assert forget_prob(quantized_copy(lm, 4)) == restored  # what the attack reported is the quantized model's
