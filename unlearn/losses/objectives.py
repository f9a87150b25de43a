"""Base objectives (the forget term) and retain terms, as pure tensor functions.

A method's loss is ``gamma * forget + alpha * retain``: the forget objective (ga, npo, simnpo; gd and kl
are the names of ga + nll and ga + kl) and the retain term (none, nll, kl) are two axes.

``forget(ce, w, mask, ref_ce, params) -> (B,)`` gives each sequence's contribution: the *sum* of its
weighted terms for ga (over tokens), its NPO / SimNPO loss for the others. The method reduces it:
``reduction="mean"`` divides by the number of units (tokens, or sequences: ``unit``), ``"sum"`` does
not (the reference's hard-sampling runs). ``ce`` carries the gradient; ``w`` is detached. A batch with
no counted token gives exactly 0 (with a zero gradient), never NaN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from unlearn.errors import check_range
from unlearn.losses.rmu import EmbedParams, RMUParams, rmu_forget
from unlearn.registry import Registry

# token: answer tokens after the causal shift; sequence; position: attended positions; label: positions whose
# label is not ignored, unshifted (RMU's activations: every chunk position, or a QA example's answer tokens)
Unit = Literal["token", "sequence", "position", "label"]


@dataclass(frozen=True)
class Objective:
    """A registered forget objective."""

    forget: Callable[..., torch.Tensor]
    retain: Literal["none", "nll", "kl"]  # the retain term it takes when ``method.retain`` is not given
    needs_reference: bool  # reference log-probs on the forget tokens (NPO)
    unit: Unit = "token"  # what "mean" averages over (instance/batch: sequence)
    fixed_retain: bool = False  # gd / kl: names of ga + nll / ga + kl, their retain term is part of the name
    # "ce": forget(ce, w, mask, ref_ce, params) on per-token CE; "activations": forget(mse, mask) on the
    # per-position MSE of a layer's output to a control vector (RMU)
    inputs: Literal["ce", "activations"] = "ce"


@dataclass(frozen=True)
class RetainTerm:
    """A registered retain term: what its mean is over."""

    unit: Unit | None  # None: no retain term


OBJECTIVES: Registry[Objective] = Registry("objective")
RETAINS: Registry[RetainTerm] = Registry("retain")


@dataclass(frozen=True)
class GAParams:
    """``gamma`` scales the forget term."""

    gamma: float = 1.0

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)


@dataclass(frozen=True)
class NPOParams:
    """NPO: ``npo_beta`` is the inverse temperature of the preference loss."""

    gamma: float = 1.0
    npo_beta: float = 0.1

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)
        check_range("npo_beta", self.npo_beta, low=0.0, low_inclusive=False)


@dataclass(frozen=True)
class SimNPOParams:
    """SimNPO: length-normalised, reference-free; ``delta`` is the reward margin (the SimNPO paper's gamma).

    open-unlearning's and the SatImp reference's margin (``delta`` / ``gamma``, subtracted *inside* the
    beta-scaling: beta * (mean CE - margin)) is this project's ``delta / npo_beta``: delta = beta * theirs.
    """

    gamma: float = 1.0
    npo_beta: float = 2.5
    delta: float = 0.0

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)
        check_range("npo_beta", self.npo_beta, low=0.0, low_inclusive=False)


@dataclass(frozen=True)
class AlphaParams:
    """``alpha`` scales the retain term."""

    alpha: float = 1.0

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, low=0.0)


def zero_like(ce: torch.Tensor) -> torch.Tensor:
    return (ce * 0.0).sum()  # keeps the graph: gradient exactly 0


def weighted_ascent(ce: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, ref_ce: torch.Tensor | None,
                    params) -> torch.Tensor:
    """-sum_t w CE of each sequence: ce, w, mask (B, T) -> (B,)."""
    return -(w * ce * mask).sum(1)


def npo_forget(ce: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, ref_ce: torch.Tensor | None,
               params: NPOParams) -> torch.Tensor:
    """NPO per sequence on its weighted log-likelihood ratio: -(2/b) logsigmoid(-b (log pi - log pi_ref))."""
    log_ratio = (w * (ref_ce - ce) * mask).sum(1)  # (B,) log pi(y|x) - log pi_ref(y|x) over the weighted tokens
    b = params.npo_beta
    return -(2.0 / b) * F.logsigmoid(-b * log_ratio) * mask.any(1)


def simnpo_forget(ce: torch.Tensor, w: torch.Tensor, mask: torch.Tensor, ref_ce: torch.Tensor | None,
                  params: SimNPOParams) -> torch.Tensor:
    """SimNPO per sequence: -(2/b) logsigmoid(b * mean_t(w CE) - delta), length-normalised."""
    n = mask.sum(1)
    mean_ce = (w * ce * mask).sum(1) / n.clamp_min(1)
    b = params.npo_beta
    return -(2.0 / b) * F.logsigmoid(b * mean_ce - params.delta) * (n > 0)


def reduce_units(per_unit_sum: torch.Tensor, n_units: torch.Tensor, reduction: str) -> torch.Tensor:
    """``sum / n_units`` ("mean") or ``sum`` ("sum"); exactly 0 with a zero gradient when there is no unit."""
    if int(n_units) == 0:
        return zero_like(per_unit_sum)
    total = per_unit_sum.sum()
    return total / n_units if reduction == "mean" else total


def retain_nll(ce: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean retain CE over counted tokens (0 if none)."""
    return reduce_units(ce * mask, mask.sum(), "mean")


OBJECTIVES.register("ga", params=GAParams, doc="gradient ascent on the weighted forget CE")(
    Objective(weighted_ascent, "none", False))
OBJECTIVES.register("gd", params=GAParams, doc="gradient difference: the name of ga + retain nll")(
    Objective(weighted_ascent, "nll", False, fixed_retain=True))
OBJECTIVES.register("kl", params=GAParams, doc="the name of ga + retain kl")(
    Objective(weighted_ascent, "kl", False, fixed_retain=True))
OBJECTIVES.register("npo", params=NPOParams, doc="NPO, per-sequence log-ratios to the reference (default retain nll)")(
    Objective(npo_forget, "nll", True, "sequence"))
OBJECTIVES.register("simnpo", params=SimNPOParams,
                    doc="SimNPO, length-normalised, reference-free; delta = npo_beta * open-unlearning's delta")(
    Objective(simnpo_forget, "nll", False, "sequence"))
OBJECTIVES.register("rmu", params=RMUParams,
                    doc="RMU: layer `layer`'s output on forget text towards a fixed random direction of norm "
                        "steering_coeff; only `trainable` parameters train (default retain embed)")(
    Objective(rmu_forget, "embed", False, "label", inputs="activations"))

RETAINS.register("none", doc="no retain term")(RetainTerm(None))
RETAINS.register("nll", params=AlphaParams, doc="alpha * retain NLL, mean over the retain answer tokens")(
    RetainTerm("token"))
RETAINS.register("kl", params=AlphaParams,
                 doc="alpha * KL(reference || current) over the vocabulary, mean over attended retain positions")(
    RetainTerm("position"))
RETAINS.register("embed", params=EmbedParams,
                 doc="alpha * MSE of layer `layer`'s output to the frozen model's on retain text (RMU), mean over "
                     "positions")(RetainTerm("label"))
