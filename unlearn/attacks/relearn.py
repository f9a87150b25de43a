"""The relearning attack: which forget rows it relearns on, and the few fine-tuning steps it takes."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from unlearn.attacks.config import RelearnConfig
from unlearn.data.batching import lm_batches
from unlearn.data.formatting import EncodedQA
from unlearn.errors import ConfigError


@dataclass(frozen=True)
class RelearnSplit:
    """The benchmark's forget units (``unit``: TOFU's forget questions, MUSE's forget articles, WMDP's forget
    documents) relearned on and held out, both sorted: a function of (n, fraction, seed) only.

    ``scored``: where the benchmark's metrics are not over the held-out units themselves, the rows of each
    evaluation set the relearned model is scored on (MUSE: the verbmem, knowmem and privleak forget rows
    that come from no relearned article), by set name; empty otherwise. Resolved once, before any model loads
    (``Benchmark.relearn_scored``), and kept in the run's record with the split.
    """

    relearn: tuple[int, ...]
    heldout: tuple[int, ...]
    unit: str = "forget row"
    scored: dict[str, tuple[int, ...]] = field(default_factory=dict)


def relearn_split(n: int, cfg: RelearnConfig, min_heldout: int = 1, unit: str = "forget row") -> RelearnSplit:
    """``round(fraction * n)`` of ``n`` forget units (``unit``) drawn with ``cfg.seed`` for relearning; the
    rest held out.

    Raises:
        ConfigError: when no unit is left to relearn on, or fewer than ``min_heldout`` to evaluate on (the
            benchmark's fewest), before any model is loaded.
    """
    k = round(cfg.fraction * n)
    most = n - min_heldout
    if k < 1 or k > most:
        side = f"no {unit} to relearn on" if k < 1 else \
            f"{n - k} {unit}(s) to evaluate on, fewer than the {min_heldout} its metrics need"
        valid = f"a fraction of {n} {unit}s that gives 1 to {most}, e.g. {1 / n:.3g} to {most / n:.3g}" if most >= 1 \
            else f"a forget set of more than {min_heldout} {unit}s"
        raise ConfigError(f"eval.relearn.fraction={cfg.fraction} of {n} {unit}s leaves {side}; valid: {valid}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed)).tolist()
    return RelearnSplit(tuple(sorted(order[:k])), tuple(sorted(order[k:])), unit)


def relearn_batches(n: int, cfg: RelearnConfig) -> list[list[int]]:
    """``cfg.steps`` batches of ``n`` examples: seeded epochs of shuffled batches (``lm_batches``), cut at ``steps``."""
    out: list[list[int]] = []
    epoch = 0
    while len(out) < cfg.steps:
        out += lm_batches(n, cfg.batch_size, seed=cfg.seed, epoch=epoch)
        epoch += 1
    return out[: cfg.steps]


def relearned_copy(model: nn.Module, examples: Sequence[EncodedQA], cfg: RelearnConfig, pad_id: int) -> nn.Module:
    """A copy of ``model`` fine-tuned ``cfg.steps`` steps on ``examples``: AdamW at constant ``cfg.lr``, no
    weight decay, gradient norm clipped at 1 (as prepare fine-tunes), mean NLL of the labelled tokens (a
    QA benchmark's answers; every token of a MUSE / WMDP text chunk)."""
    from unlearn.train.loop import finetune_epoch
    from unlearn.train.module import CausalLMWithLoss

    out = copy.deepcopy(model)
    for p in out.parameters():
        p.requires_grad_(True)
    wrapped = CausalLMWithLoss(out)
    opt = torch.optim.AdamW([p for p in wrapped.parameters()], lr=cfg.lr, weight_decay=0.0)
    constant = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    device = next(out.parameters()).device
    finetune_epoch(wrapped, examples, relearn_batches(len(examples), cfg), opt, constant, pad_id, device)
    return out.eval()
