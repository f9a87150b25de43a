"""Granularity of the weights and hard sampling, as pure tensor functions.

All functions take detached fp32 ``ce`` (B, T) and a ``mask`` (B, T) bool of the tokens that count, and
return a (B, T) fp32 tensor that is 0 outside the mask.
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


@dataclass(frozen=True)
class GroupParams:
    """``group_size`` tokens (sorted by weight within a sequence) share their mean weight."""

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
    """A random fraction ``k`` of each sequence's tokens is weighted ``s``, the rest ``1 - s``."""

    k: float = 0.5
    s: float = 1.0

    def __post_init__(self) -> None:
        check_range("k", self.k, low=0.0, high=1.0, low_inclusive=False)
        check_range("s", self.s, low=0.0, high=1.0)


# ---------------------------------------------------------------- granularity
@GRANULARITIES.register("token", doc="each token weighted by its own likelihood")
def token_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: None = None) -> torch.Tensor:
    return weight(ce) * mask


@GRANULARITIES.register("instance", doc="one weight per sequence, from its summed CE")
def instance_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: None = None) -> torch.Tensor:
    seq_ce = (ce * mask).sum(1, keepdim=True)  # (B, 1)
    return weight(seq_ce).expand_as(ce) * mask


@GRANULARITIES.register("batch", doc="one weight for the batch: the mean of instance weights")
def batch_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: None = None) -> torch.Tensor:
    has_tokens = mask.any(1)
    if not has_tokens.any():
        return torch.zeros_like(ce)
    w_seq = weight((ce * mask).sum(1))[has_tokens].mean()
    return w_seq * mask.float()


@GRANULARITIES.register("group", params=GroupParams, doc="tokens sorted by weight, groups of group_size share their mean")
def group_granularity(ce: torch.Tensor, mask: torch.Tensor, weight: TokenWeight, params: GroupParams) -> torch.Tensor:
    """Works for any sequence length: invalid tokens sort last and are never grouped."""
    w = weight(ce)
    key = torch.where(mask, w, torch.full_like(w, math.inf))
    order = key.argsort(dim=1, stable=True)  # (B, T): valid tokens first, by increasing weight
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
def _rank_within_sequence(score: torch.Tensor, mask: torch.Tensor, descending: bool) -> torch.Tensor:
    """Rank (0 = first) of each valid token by ``score`` within its sequence; invalid tokens rank last."""
    fill = -math.inf if descending else math.inf
    key = torch.where(mask, score, torch.full_like(score, fill))
    order = key.argsort(dim=1, descending=descending, stable=True)
    return order.argsort(dim=1)


def _n_keep(mask: torch.Tensor, k: float) -> torch.Tensor:
    return torch.ceil(mask.sum(1, keepdim=True) * k)  # (B, 1)


@SAMPLERS.register("none", doc="every answer token kept")
def no_sampling(ce: torch.Tensor, mask: torch.Tensor, params: None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    return mask.float()


@SAMPLERS.register("topk", params=FractionParams, doc="keep the fraction k of lowest-likelihood tokens per sequence")
def topk_sampling(ce: torch.Tensor, mask: torch.Tensor, params: FractionParams, generator: torch.Generator | None = None) -> torch.Tensor:
    rank = _rank_within_sequence(ce, mask, descending=True)  # highest CE = lowest likelihood first
    return ((rank < _n_keep(mask, params.k)) & mask).float()


@SAMPLERS.register("bottomk", params=FractionParams, doc="keep the fraction k of highest-likelihood tokens per sequence")
def bottomk_sampling(ce: torch.Tensor, mask: torch.Tensor, params: FractionParams, generator: torch.Generator | None = None) -> torch.Tensor:
    rank = _rank_within_sequence(ce, mask, descending=False)
    return ((rank < _n_keep(mask, params.k)) & mask).float()


@SAMPLERS.register("random", params=RandomParams, doc="random fraction k weighted s, the rest 1-s (seeded generator)")
def random_sampling(ce: torch.Tensor, mask: torch.Tensor, params: RandomParams, generator: torch.Generator | None = None) -> torch.Tensor:
    if generator is None:
        raise ConfigError("sampling 'random' needs a torch.Generator (pass generator=...); global RNG is never used")
    score = torch.rand(ce.shape, generator=generator, device=generator.device).to(ce.device)
    chosen = _rank_within_sequence(score, mask, descending=False) < _n_keep(mask, params.k)
    return torch.where(chosen, params.s, 1.0 - params.s) * mask
