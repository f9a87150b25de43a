"""Base objectives: how weighted forget-token CE and the retain terms become a scalar loss.

Each objective is a pair of pure tensor functions:
``forget(ce, w, mask, ref_ce, params) -> scalar`` and ``retain(ce, mask, kl, params) -> scalar``.
``ce`` carries the gradient; ``w`` is detached. A batch with no counted token gives exactly 0 (with a
zero gradient), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from unlearn.errors import check_range
from unlearn.registry import Registry


@dataclass(frozen=True)
class Objective:
    """A registered base objective."""

    forget: Callable[..., torch.Tensor]
    retain: Literal["none", "nll", "kl"]
    needs_reference: bool  # reference log-probs on the forget tokens (NPO)
    unit: Literal["token", "sequence"] = "token"  # what the forget term averages over


OBJECTIVES: Registry[Objective] = Registry("objective")


@dataclass(frozen=True)
class GAParams:
    """``gamma`` scales the forget term."""

    gamma: float = 1.0

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)


@dataclass(frozen=True)
class RetainParams:
    """``gamma`` scales the forget term, ``alpha`` the retain term."""

    gamma: float = 1.0
    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)
        check_range("alpha", self.alpha, low=0.0)


@dataclass(frozen=True)
class NPOParams:
    """NPO: ``npo_beta`` is the inverse temperature of the preference loss."""

    gamma: float = 1.0
    alpha: float = 1.0
    npo_beta: float = 0.1

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)
        check_range("alpha", self.alpha, low=0.0)
        check_range("npo_beta", self.npo_beta, low=0.0, low_inclusive=False)


@dataclass(frozen=True)
class SimNPOParams:
    """SimNPO: length-normalised, reference-free; ``delta`` is the reward margin (the paper's gamma)."""

    gamma: float = 1.0
    alpha: float = 1.0
    npo_beta: float = 2.5
    delta: float = 0.0

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)
        check_range("alpha", self.alpha, low=0.0)
        check_range("npo_beta", self.npo_beta, low=0.0, low_inclusive=False)


def _zero_like(ce: torch.Tensor) -> torch.Tensor:
    return (ce * 0.0).sum()  # keeps the graph: gradient exactly 0


def weighted_ascent(ce: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, ref_ce: torch.Tensor | None, params) -> torch.Tensor:
    """-gamma * sum(w * CE) / n_tokens: ce, w, mask (B, T)."""
    n = mask.sum()
    if n == 0:
        return _zero_like(ce)
    return -params.gamma * (w * ce * mask).sum() / n


def npo_forget(ce: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, ref_ce: torch.Tensor | None, params: NPOParams) -> torch.Tensor:
    """NPO on weighted sequence log-likelihood ratios: -(2/b) mean logsigmoid(-b (log pi - log pi_ref))."""
    has = mask.any(1)
    if not has.any():
        return _zero_like(ce)
    log_ratio = (w * (ref_ce - ce) * mask).sum(1)  # (B,) log pi(y|x) - log pi_ref(y|x), weighted
    b = params.npo_beta
    return params.gamma * (-(2.0 / b) * F.logsigmoid(-b * log_ratio))[has].mean()


def simnpo_forget(ce: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, ref_ce: torch.Tensor | None, params: SimNPOParams) -> torch.Tensor:
    """SimNPO: -(2/b) mean logsigmoid(b * mean_t(w CE) - delta), length-normalised per sequence."""
    n = mask.sum(1)
    has = n > 0
    if not has.any():
        return _zero_like(ce)
    mean_ce = (w * ce * mask).sum(1) / n.clamp_min(1)
    b = params.npo_beta
    return params.gamma * (-(2.0 / b) * F.logsigmoid(b * mean_ce - params.delta))[has].mean()


def retain_nll(ce: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean retain CE over counted tokens (0 if none)."""
    n = mask.sum()
    return _zero_like(ce) if n == 0 else (ce * mask).sum() / n


OBJECTIVES.register("ga", params=GAParams, doc="gradient ascent on the weighted forget CE")(
    Objective(weighted_ascent, "none", False))
OBJECTIVES.register("gd", params=RetainParams, doc="gradient difference: forget + alpha * retain NLL")(
    Objective(weighted_ascent, "nll", False))
OBJECTIVES.register("kl", params=RetainParams, doc="forget + alpha * KL(current || reference) on retain tokens")(
    Objective(weighted_ascent, "kl", False))
OBJECTIVES.register("npo", params=NPOParams, doc="NPO (needs reference log-probs) + alpha * retain NLL")(
    Objective(npo_forget, "nll", True, "sequence"))
OBJECTIVES.register("simnpo", params=SimNPOParams, doc="SimNPO (length-normalised, reference-free) + alpha * retain NLL")(
    Objective(simnpo_forget, "nll", False, "sequence"))
