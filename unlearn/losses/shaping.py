"""Granularity of the weights, hard sampling and key-token importance, as pure tensor functions.

All functions take detached fp32 ``ce`` (B, T) and a ``mask`` (B, T) bool of the tokens that count, and
return a (B, T) fp32 tensor that is 0 outside the mask.

Definitions (the reference, tmlr-group/SatImp, is the spec; README's fidelity table names each deviation):

- instance: one weight per sequence, f(p_b) with p_b = exp(-sum_t CE_bt); batch: one weight, the mean of
  f(p_b) over the (global) batch. Both make the forget term a mean over *sequences* (SEQUENCE_LEVEL).
- group: a sequence's token weights sorted in descending order; consecutive groups of ``group_size``
  share their mean; the last, partial group holds the smallest weights.
- topk / bottomk: per sequence over its n answer tokens, the (1 - k)- (resp. k-) quantile of CE with
  linear interpolation (``torch.quantile``); top-k keeps CE strictly above it, bottom-k strictly below.
  The reference's bottom-k parameter h keeps CE strictly below the (1 - h)-quantile: h = 1 - k.
- random: a uniformly random floor(k n) of the tokens get weight s, the rest 1 - s (s may be fractional).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearn.errors import ConfigError, check_range
from unlearn.registry import Registry

TokenWeight = Callable[[torch.Tensor], torch.Tensor]
GranularityFn = Callable[[torch.Tensor, torch.Tensor, TokenWeight, object], torch.Tensor]
SamplerFn = Callable[[torch.Tensor, torch.Tensor, object, "torch.Generator | None"], torch.Tensor]

GRANULARITIES: Registry[GranularityFn] = Registry("granularity")
SAMPLERS: Registry[SamplerFn] = Registry("sampling")


# Granularities whose forget term is a mean over sequences (sum of the sequence's weighted CE, / B).
SEQUENCE_LEVEL = frozenset({"instance", "batch"})


@dataclass(frozen=True)
class GroupParams:
    """``group_size`` tokens (sorted by weight, descending, within a sequence) share their mean weight."""

    group_size: int = 4

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ConfigError(f"group_size={self.group_size!r} is out of range; valid: an integer >= 1")


@dataclass(frozen=True)
class FractionParams:
    """Keep the fraction ``k`` of each sequence's answer tokens."""

    k: float = 0.5

    def __post_init__(self) -> None:
        check_range("k", self.k, low=0.0, high=1.0, low_inclusive=False)


@dataclass(frozen=True)
class RandomParams:
    """A random floor(k n) of each sequence's n tokens is weighted ``s``, the rest ``1 - s``."""

    k: float = 0.5
    s: float = 1.0

    def __post_init__(self) -> None:
        check_range("k", self.k, low=0.0, high=1.0, low_inclusive=False)
        check_range("s", self.s, low=0.0, high=1.0)


@dataclass(frozen=True)
class ImportanceParams:
    """With ``method.importance``: key-phrase tokens weighted ``s``, the other answer tokens ``1 - s``."""

    s: float = 1.0

    def __post_init__(self) -> None:
        check_range("s", self.s, low=0.0, high=1.0)


# ---------------------------------------------------------------- granularity
@GRANULARITIES.register("token", doc="each token weighted by its own likelihood")
def token_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: None = None) -> torch.Tensor:
    return weight(ce) * mask


@GRANULARITIES.register("instance", doc="one weight per sequence, from its summed CE; a mean over sequences")
def instance_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: None = None) -> torch.Tensor:
    seq_ce = (ce * mask).sum(1, keepdim=True)  # (B, 1)
    return weight(seq_ce).expand_as(ce) * mask


def sequence_weights(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight) -> tuple[torch.Tensor, torch.Tensor]:
    """f(p_b) of each sequence, p_b = exp(-sum_t CE_bt): (B,), and which sequences have a token: (B,) bool."""
    return weight((ce * mask).sum(1)), mask.any(1)


@GRANULARITIES.register("batch", doc="one weight, the mean of instance weights over the global batch; a mean over sequences")
def batch_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: None = None) -> torch.Tensor:
    w_seq, has_tokens = sequence_weights(ce, mask, weight)
    if not has_tokens.any():
        return torch.zeros_like(ce)
    return w_seq[has_tokens].mean() * mask.to(ce.dtype)


@GRANULARITIES.register("group", params=GroupParams,
                        doc="token weights sorted descending, groups of group_size share their mean")
def group_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: GroupParams) -> torch.Tensor:
    """Works for any sequence length: invalid tokens sort last and are never grouped."""
    w = weight(ce)
    key = torch.where(mask, w, torch.full_like(w, -math.inf))
    order = key.argsort(dim=1, descending=True, stable=True)  # (B, T): valid tokens first, largest weight first
    sorted_w = w.gather(1, order)
    sorted_valid = mask.gather(1, order)
    pos = torch.arange(ce.shape[1], device=ce.device).expand_as(order)
    gid = pos // params.group_size  # (B, T) group id in sorted order
    n_groups = gid.max().item() + 1 if ce.numel() else 1
    sums = torch.zeros(ce.shape[0], n_groups, dtype=w.dtype, device=ce.device).scatter_add_(1, gid, sorted_w * sorted_valid)
    counts = torch.zeros_like(sums).scatter_add_(1, gid, sorted_valid.to(w.dtype))
    means = sums / counts.clamp_min(1)
    out = torch.zeros_like(w)
    out.scatter_(1, order, means.gather(1, gid))
    return out * mask


# ---------------------------------------------------------------- hard sampling
def _quantile_keep(ce: torch.Tensor, mask: torch.Tensor, q: float, above: bool) -> torch.Tensor:
    """Per sequence: its answer tokens whose CE is strictly above (below) the q-quantile of their CE.

    The quantile is ``torch.quantile`` (linear interpolation) in ``ce``'s dtype; the rule is the definition
    (about ceil(k (n - 1)) tokens kept for distinct values, none when n = 1). A loop over the B rows: B is
    small, and each row's quantile is then exactly torch's.
    """
    keep = torch.zeros_like(mask)
    for b in range(ce.shape[0]):
        row = ce[b][mask[b]]
        if row.numel() == 0:
            continue
        thr = torch.quantile(row, q)
        keep[b] = mask[b] & ((ce[b] > thr) if above else (ce[b] < thr))
    return keep


@SAMPLERS.register("none", doc="every answer token kept")
def no_sampling(ce: torch.Tensor, mask: torch.Tensor, params: None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    return mask.to(ce.dtype)


@SAMPLERS.register("topk", params=FractionParams,
                   doc="keep tokens with CE > the (1-k)-quantile of their sequence (lowest likelihood)")
def topk_sampling(ce: torch.Tensor, mask: torch.Tensor, params: FractionParams, generator: torch.Generator | None = None) -> torch.Tensor:
    return _quantile_keep(ce, mask, 1.0 - params.k, above=True).to(ce.dtype)


@SAMPLERS.register("bottomk", params=FractionParams,
                   doc="keep tokens with CE < the k-quantile of their sequence (reference's h = 1 - k)")
def bottomk_sampling(ce: torch.Tensor, mask: torch.Tensor, params: FractionParams, generator: torch.Generator | None = None) -> torch.Tensor:
    return _quantile_keep(ce, mask, params.k, above=False).to(ce.dtype)


@SAMPLERS.register("random", params=RandomParams, doc="random floor(k n) tokens weighted s, the rest 1-s (seeded)")
def random_sampling(ce: torch.Tensor, mask: torch.Tensor, params: RandomParams, generator: torch.Generator | None = None) -> torch.Tensor:
    if generator is None:
        raise ConfigError("sampling 'random' needs a torch.Generator (pass generator=...); global RNG is never used")
    score = torch.rand(ce.shape, generator=generator, device=generator.device).to(ce.device)
    key = torch.where(mask, score, torch.full_like(score, math.inf))
    rank = key.argsort(dim=1, stable=True).argsort(dim=1)  # a uniformly random order of each row's tokens
    chosen = rank < torch.floor(mask.sum(1, keepdim=True).double() * params.k)  # as Python's floor(n * k)
    return torch.where(chosen, params.s, 1.0 - params.s).to(ce.dtype) * mask


def importance_factor(importance: torch.Tensor, mask: torch.Tensor, params: ImportanceParams) -> torch.Tensor:
    """s on key-phrase answer tokens, 1 - s on the other answer tokens, 0 elsewhere: (B, T) fp32."""
    return torch.where(importance.bool(), params.s, 1.0 - params.s).to(torch.float32) * mask
