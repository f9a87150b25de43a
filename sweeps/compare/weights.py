"""How a method's token weights follow the token's likelihood, measured on the weights themselves: the
prepared target model's per-token CE over the forget set's answer tokens, the method's weights on them
(``Method.weights``: weighting and granularity, at the method's tuned parameters), and Spearman's rank
correlation between weight and likelihood ``p = exp(-ce)`` over every forget answer token."""

from __future__ import annotations

import torch

from unlearn.losses.ce import token_ce
from unlearn.losses.method import Method
from unlearn.train.config import RunConfig

TokenCE = list[tuple[torch.Tensor, torch.Tensor]]  # per forget example: ce (1, T-1) fp32, mask (1, T-1) bool


@torch.no_grad()
def forget_token_ce(cfg: RunConfig) -> TokenCE:
    """The prepared (cached) target model's per-token CE on each forget example, one example at a time."""
    from unlearn.models import load_model, load_tokenizer
    from unlearn.train.prepare import prepare

    prepared = prepare(cfg, log=lambda s: None)
    tokenizer = load_tokenizer(prepared.target_dir)
    lm = load_model(prepared.target_dir).eval()
    forget, _ = cfg.benchmark.unlearn_examples(tokenizer, cfg.benchmark.load(cfg.data), cfg.data, key_texts=False)
    out = []
    for ex in forget:
        ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
        out.append(token_ce(lm(input_ids=ids).logits, labels))
    return out


def weight_likelihood_correlation(cfg: RunConfig, ces: TokenCE) -> float:
    """Spearman's rank correlation of ``cfg.method``'s weights with the token likelihood over ``ces``'s
    counted tokens (NaN when the weights are constant)."""
    import scipy.stats

    method = Method(cfg.method)
    w, p = [], []
    for ce, mask in ces:
        weights = method.weights(ce, mask, torch.Generator().manual_seed(0))
        w.append(weights[mask])
        p.append(torch.exp(-ce[mask]))
    w_all, p_all = torch.cat(w).numpy(), torch.cat(p).numpy()
    if w_all.min() == w_all.max():
        return float("nan")
    return float(scipy.stats.spearmanr(w_all, p_all).statistic)
