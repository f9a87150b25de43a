"""Token weightings: pure functions of detached per-token CE, computed in fp32.

``p = exp(-CE)`` is the token's likelihood and ``1 - p = -expm1(-CE)`` (exact for small CE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from unlearn.errors import check_range
from unlearn.registry import Registry

WeightFn = Callable[[torch.Tensor, object], torch.Tensor]
WEIGHTINGS: Registry[WeightFn] = Registry("weighting")


@dataclass(frozen=True)
class SatImpParams:
    """SatImp exponents: ``beta1`` on the likelihood (saturation), ``beta2`` on 1 - likelihood (importance)."""

    beta1: float = 5.0
    beta2: float = 0.1

    def __post_init__(self) -> None:
        check_range("beta1", self.beta1, low=0.0)
        check_range("beta2", self.beta2, low=0.0)


@dataclass(frozen=True)
class ExponentParams:
    """A single exponent ``beta`` (a temperature: larger means sharper weights)."""

    beta: float = 1.0

    def __post_init__(self) -> None:
        check_range("beta", self.beta, low=0.0)


def fp32(x: torch.Tensor) -> torch.Tensor:
    """Detached copy in at least fp32 (fp64 stays fp64 for gradchecks)."""
    return x.detach().to(torch.promote_types(x.dtype, torch.float32))


def _log_p(ce: torch.Tensor) -> torch.Tensor:
    return -fp32(ce)


def _log_one_minus_p(ce: torch.Tensor) -> torch.Tensor:
    # log(1 - p) = log(-expm1(-ce)); clamp keeps ce == 0 (p == 1) finite: weight 0 when beta2 > 0.
    return torch.log(-torch.expm1(-fp32(ce).clamp_min(1e-30)))


def _pow_from_log(log_x: torch.Tensor, beta: float) -> torch.Tensor:
    # x^0 == 1 even where x == 0, as for floats; exp(0 * -inf) would give NaN.
    return torch.ones_like(log_x) if beta == 0 else torch.exp(beta * log_x)


@WEIGHTINGS.register("satimp", params=SatImpParams, doc="w = p^beta1 * (1-p)^beta2 (SatImp)")
def satimp_weights(ce: torch.Tensor, params: SatImpParams) -> torch.Tensor:
    """w = p^beta1 (1-p)^beta2; ce: (...) -> w: (...) fp32, detached."""
    return _pow_from_log(_log_p(ce), params.beta1) * _pow_from_log(_log_one_minus_p(ce), params.beta2)


@WEIGHTINGS.register("simsat", params=ExponentParams, doc="w = p^beta (saturation only)")
def simsat_weights(ce: torch.Tensor, params: ExponentParams) -> torch.Tensor:
    """w = p^beta."""
    return _pow_from_log(_log_p(ce), params.beta)


@WEIGHTINGS.register("wga", params=ExponentParams, doc="w = p^beta (open-unlearning's WGA, = simsat)")
def wga_weights(ce: torch.Tensor, params: ExponentParams) -> torch.Tensor:
    """Weighted gradient ascent: the same weights as simsat."""
    return simsat_weights(ce, params)


@WEIGHTINGS.register("simimp", params=ExponentParams, doc="w = (1-p)^beta (importance only)")
def simimp_weights(ce: torch.Tensor, params: ExponentParams) -> torch.Tensor:
    """w = (1-p)^beta."""
    return _pow_from_log(_log_one_minus_p(ce), params.beta)


@WEIGHTINGS.register("uniform", doc="w = 1 (plain gradient ascent)")
def uniform_weights(ce: torch.Tensor, params: None = None) -> torch.Tensor:
    """w = 1."""
    return torch.ones_like(fp32(ce))
