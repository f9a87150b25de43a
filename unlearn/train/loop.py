"""The unlearning loop, read top to bottom: global batches -> per-rank micro-batches -> loss -> step.

Works on one process or under torch.distributed (DDP / FSDP2): every rank plans the same global
batches and keeps its shard; each micro-batch's loss is scaled by its share of the *global* count of
the units its mean is over (forget: answer tokens, or sequences for instance / batch granularity and
NPO / SimNPO; retain: answer tokens for nll, attended positions for kl), so the summed gradient equals
the gradient of the global-batch loss whatever the number of workers or the accumulation steps. With
``method.reduction=sum`` a loss is a sum and each micro-batch counts whole. Batch granularity's weight is
the mean of f(p_b) over the whole global batch: a no-grad forward of each micro-batch of the forget batch
before its micro-steps (one extra forward of the forget batch per step), summed over ranks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as tdist
from torch import nn

from unlearn.data.batching import epoch_batches, shard
from unlearn.data.formatting import IGNORE_INDEX, EncodedQA, collate
from unlearn.errors import UnlearnError
from unlearn.losses import LossOutput, Method, resolve_loss_path, shift_labels, shift_mask
from unlearn.losses.rmu import activation_mse
from unlearn.train.config import OptimConfig


class DivergedError(UnlearnError, RuntimeError):
    """The loss became NaN or infinite; the run stops at the first such step."""


@dataclass(frozen=True)
class Dist:
    """Where this process sits in the worker group."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world_size > 1:
            tdist.all_reduce(t)
        return t


@dataclass(frozen=True)
class UnlearnData:
    """Tokenized forget and retain examples (the whole sets; every rank holds them, they are small)."""

    forget: tuple[EncodedQA, ...]
    retain: tuple[EncodedQA, ...]
    pad_id: int


def n_answer_tokens(e: EncodedQA) -> int:
    """Tokens that carry a loss after the causal shift (labels at positions 1..T-1)."""
    return sum(1 for x in e.labels[1:] if x != -100)


def make_optimizer(model: nn.Module, cfg: OptimConfig, total_steps: int):
    """AdamW with linear warm-up then linear decay to 0 over ``total_steps``."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def factor(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        rest = max(1, total_steps - cfg.warmup_steps)
        return max(0.0, 1.0 - (step - cfg.warmup_steps) / rest)

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def steps_per_epoch(n_forget: int, batch_size: int) -> int:
    return math.ceil(n_forget / batch_size)


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _micro_slices(local: list[int], micro: int, n_micro: int) -> list[list[int]]:
    return [local[i * micro:(i + 1) * micro] for i in range(n_micro)]


def _units(examples: Sequence[EncodedQA], unit: str) -> int:
    if unit == "sequence":
        return sum(1 for e in examples if n_answer_tokens(e) > 0)
    if unit == "position":  # attended positions (collate pads on the right)
        return sum(len(e.input_ids) for e in examples)
    if unit == "label":  # positions whose label counts, unshifted (RMU's activations)
        return sum(sum(1 for x in e.labels if x != IGNORE_INDEX) for e in examples)
    return sum(n_answer_tokens(e) for e in examples)


def _share(method: Method, examples: Sequence[EncodedQA], unit: str, denom: int, empty: bool) -> float:
    """A micro-batch's weight in the global-batch loss: its share of the units of a mean, 1 for a sum."""
    if empty:
        return 0.0
    return 1.0 if method.reduction == "sum" else _units(examples, unit) / denom


def train_epoch(policy: nn.Module, ref: nn.Module | None, method: Method, data: UnlearnData, optimizer,
                scheduler, optim: OptimConfig, *, seed: int, epoch: int, dist: Dist = Dist()) -> dict[str, float]:
    """One epoch over the forget set (paired retain batches). Returns mean training statistics.

    Raises:
        DivergedError: at the first step whose loss is not finite (every rank raises together).
        ConfigError: ``optim.loss_path`` forces a kernel that cannot run on ``dist.device`` (before any step).
    """
    resolve_loss_path(optim.loss_path, dist.device)  # a kernel that cannot run here fails now, not mid-epoch
    loss_path = optim.loss_path  # auto is resolved by the module, which knows the hidden states' dtype
    policy.train()
    micro = optim.micro_batch_size or math.ceil(optim.batch_size / dist.world_size)
    totals: dict[str, float] = {}
    batches = epoch_batches(len(data.forget), len(data.retain), optim.batch_size, seed=seed, epoch=epoch)
    for step, (f_idx, r_idx) in enumerate(batches):
        # Same number of micro-steps on every rank (sharded forward/backward are collective).
        n_micro = math.ceil(math.ceil(len(f_idx) / dist.world_size) / micro)
        f_global = [data.forget[i] for i in f_idx]
        r_global = [data.retain[i] for i in r_idx]
        denom_f = max(1, _units(f_global, method.forget_unit))
        denom_r = max(1, _units(r_global, method.retain_unit))
        f_loc = _micro_slices(shard(f_idx, dist.rank, dist.world_size), micro, n_micro)
        r_loc = _micro_slices(shard(r_idx, dist.rank, dist.world_size), micro, n_micro)
        batch_w = _global_batch_weight(policy, method, data, f_loc, loss_path, dist) \
            if method.needs_batch_weight else None
        step_loss = torch.zeros((), device=dist.device)
        step_stats: dict[str, float] = {}
        for m, (fi, ri) in enumerate(zip(f_loc, r_loc)):
            gen = torch.Generator().manual_seed(hash((seed, epoch, step, dist.rank, m)) % 2**63)
            loss, stats = _micro_step(policy, ref, method, data, fi, ri, denom_f, denom_r, loss_path, gen, dist,
                                      batch_w, run_seed=seed)
            # DDP / FSDP average gradients over ranks; the scaled losses already sum to the global mean.
            (loss * dist.world_size).backward()
            step_loss += loss.detach()
            for k, v in stats.items():
                step_stats[k] = step_stats.get(k, 0.0) + v / n_micro
        step_loss = dist.all_reduce_sum(step_loss)
        if not torch.isfinite(step_loss):
            optimizer.zero_grad(set_to_none=True)
            raise DivergedError(f"loss is {float(step_loss)} at epoch {epoch + 1}, step {step + 1} "
                                f"(optim.lr={optim.lr}); lower the learning rate or clip gradients (optim.grad_clip)")
        if optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_([p for p in policy.parameters() if p.grad is not None], optim.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step_stats["loss"] = float(step_loss)
        for k, v in step_stats.items():
            totals[k] = totals.get(k, 0.0) + v / len(batches)
    _check_finite_weights(policy, optim, epoch, len(batches), totals.get("loss"), dist)
    return _mean_over_ranks(totals, dist)


def _check_finite_weights(policy: nn.Module, optim: OptimConfig, epoch: int, steps: int, loss: float | None,
                          dist: Dist) -> None:
    """The last step of an epoch can leave non-finite weights behind a finite loss (its loss is computed
    before the update): raise as a diverged loss would, before an evaluation of the epoch reads them.

    Raises:
        DivergedError: a trained parameter holds a NaN or an infinity on some rank.
    """
    bad = torch.zeros((), device=dist.device)
    for p in policy.parameters():
        if p.requires_grad:
            local = p.to_local() if hasattr(p, "to_local") else p  # an FSDP2 shard
            if not bool(torch.isfinite(local).all()):
                bad += 1
                break
    if float(dist.all_reduce_sum(bad)) > 0:
        raise DivergedError(f"loss is {loss} (mean) at epoch {epoch + 1}, but its {steps} step(s) left weights that "
                            f"are not finite (optim.lr={optim.lr}); lower the learning rate or clip gradients "
                            "(optim.grad_clip)")


def _mean_over_ranks(stats: dict[str, float], dist: Dist) -> dict[str, float]:
    """Statistics averaged over workers (the loss is already global; averaging leaves it unchanged)."""
    if dist.world_size == 1 or not stats:
        return stats
    keys = sorted(stats)
    t = dist.all_reduce_sum(torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=dist.device))
    return {k: float(v) / dist.world_size for k, v in zip(keys, t.tolist())}


def _global_batch_weight(policy, method: Method, data: UnlearnData, f_loc: list[list[int]], loss_path: str,
                         dist: Dist) -> torch.Tensor:
    """Batch granularity's weight over the global forget batch: mean_b f(p_b), from a no-grad forward of
    every local micro-batch (an empty slice forwards a stand-in, as the micro-steps do), summed over ranks."""
    parts = torch.zeros(2, dtype=torch.float64, device=dist.device)
    with torch.no_grad():
        for fi in f_loc:
            fb = _to(collate([data.forget[i] for i in (fi or [0])], data.pad_id), dist.device)
            ce = policy(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="ce", loss_path=loss_path)
            if fi:
                parts += method.batch_weight_parts(ce, shift_labels(fb["labels"])[1]).to(parts.device)
    parts = dist.all_reduce_sum(parts)
    return (parts[0] / parts[1].clamp_min(1)).float()


def _micro_step(policy, ref, method: Method, data: UnlearnData, fi: list[int], ri: list[int], denom_f: int,
                denom_r: int, loss_path: str, gen: torch.Generator, dist: Dist,
                batch_w: torch.Tensor | None = None, *, run_seed: int = 0) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one micro-batch, scaled by its share of the global batch; an empty slice contributes 0."""
    empty = not fi
    f_ex = [data.forget[i] for i in (fi or [0])]
    fb = _to(collate(f_ex, data.pad_id), dist.device)
    share_f = _share(method, f_ex, method.forget_unit, denom_f, empty)
    if method.needs_activations:
        out = policy(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="act_term", layer=method.layer,
                     term=lambda h, mask: method.activation_forget_term(
                         h, mask, method.control_vector(h.shape[-1], run_seed)))
        return _with_retain(policy, ref, method, data, ri, out, share_f, denom_r, empty, loss_path, dist)
    ref_ce = None
    if method.needs_forget_reference:
        with torch.no_grad():
            ref_ce = ref(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="ce", loss_path=loss_path)
    # The batch's key-phrase mask is aligned with its labels (B, T); the CE with the shifted labels (B, T-1).
    importance = shift_mask(fb["importance"]) if "importance" in fb else None

    def forget_term(ce: torch.Tensor, mask: torch.Tensor) -> LossOutput:
        return method.forget_term(ce, mask, ref_ce=ref_ce, importance=importance, generator=gen,
                                  batch_weight=batch_w)

    out = policy(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="term", term=forget_term,
                 loss_path=loss_path)
    return _with_retain(policy, ref, method, data, ri, out, share_f, denom_r, empty, loss_path, dist)


def _with_retain(policy, ref, method: Method, data: UnlearnData, ri: list[int], out: LossOutput, share_f: float,
                 denom_r: int, empty: bool, loss_path: str, dist: Dist) -> tuple[torch.Tensor, dict[str, float]]:
    """The forget term ``out`` scaled by its share, plus the retain term of the paired retain slice."""
    loss = out.loss * share_f
    stats = dict(out.stats)
    if method.retain_kind != "none" and method.alpha > 0:
        r_ex = [data.retain[i] for i in (ri or [0])]
        rb = _to(collate(r_ex, data.pad_id), dist.device)
        share_r = _share(method, r_ex, method.retain_unit, denom_r, empty)
        r_out = _retain_term(policy, ref, method, rb, loss_path)
        loss = loss + r_out.loss * share_r
        stats.update(r_out.stats)
    return loss, stats


def _retain_term(policy, ref, method: Method, rb: dict[str, torch.Tensor], loss_path: str) -> LossOutput:
    if method.retain_kind == "embed":
        with torch.no_grad():
            ref_h = ref(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="acts", layer=method.layer)
        return policy(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="act_term", layer=method.layer,
                      term=lambda h, mask: method.retain_term(embed=activation_mse(h, ref_h), mask=mask))
    if method.retain_kind == "kl":
        with torch.no_grad():
            ref_logits = ref(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="logits")
        return policy(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="kl_term",
                      term=lambda kl, mask: method.retain_term(kl=kl, mask=mask), ref_logits=ref_logits)
    return policy(rb["input_ids"], rb["attention_mask"], rb["labels"], mode="term", loss_path=loss_path,
                  term=lambda ce, mask: method.retain_term(ce=ce, mask=mask))


def finetune_epoch(model: nn.Module, examples: Sequence[EncodedQA], order: list[list[int]], optimizer, scheduler,
                   pad_id: int, device: torch.device, loss_path: str = "chunked") -> float:
    """One epoch of plain NLL fine-tuning (prepare); returns the mean loss."""
    from unlearn.losses.objectives import retain_nll

    model.train()
    total = 0.0
    for idx in order:
        b = _to(collate([examples[i] for i in idx], pad_id), device)
        out = model(b["input_ids"], b["attention_mask"], b["labels"], mode="term", loss_path=loss_path,
                    term=lambda ce, mask: LossOutput(retain_nll(ce, mask), {}))
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total += float(out.loss.detach()) / len(order)
    return total
