"""The SatImp loss family: token weightings x granularity x sampling x forget objective x retain term.

Everything here is a pure tensor function of per-token CE and masks; nothing receives a model.
"""

from __future__ import annotations

import torch

from unlearn.losses.ce import check_shapes, shift_labels, shift_mask, token_ce, token_kl
from unlearn.losses.fused import chunked_ce, fused_lm_term, fused_weighted_lm_loss
from unlearn.losses.head import LOSS_PATHS, head_ce, head_lm_term, head_token_ce, resolve_loss_path
from unlearn.losses.method import COMPONENTS, PARAM_NAMES, REDUCTIONS, LossOutput, Method, MethodConfig, build_method
from unlearn.losses.objectives import OBJECTIVES, RETAINS
from unlearn.losses.shaping import GRANULARITIES, SAMPLERS
from unlearn.losses.weightings import WEIGHTINGS


def satimp_loss(logits: torch.Tensor, labels: torch.Tensor, *, beta1: float = 5.0, beta2: float = 0.1) -> torch.Tensor:
    """SatImp gradient-ascent loss: -mean over answer tokens of p^beta1 (1-p)^beta2 * CE.

    Args:
        logits: (B, T, V); labels: (B, T) with -100 for ignored positions. The causal shift happens inside.
        beta1, beta2: exponents on p = exp(-CE) and 1 - p (detached, fp32).

    Returns:
        Scalar loss; 0 (with zero gradient) when no token is an answer token.
    """
    ce, mask = token_ce(logits, labels)
    return build_method("satimp", beta1=beta1, beta2=beta2).forget_term(ce, mask).loss


__all__ = [
    "COMPONENTS", "GRANULARITIES", "LOSS_PATHS", "OBJECTIVES", "PARAM_NAMES", "REDUCTIONS", "RETAINS", "SAMPLERS",
    "WEIGHTINGS", "LossOutput", "Method", "MethodConfig", "build_method", "check_shapes", "chunked_ce",
    "fused_lm_term", "fused_weighted_lm_loss", "head_ce", "head_lm_term", "head_token_ce", "resolve_loss_path",
    "satimp_loss", "shift_labels", "shift_mask", "token_ce", "token_kl",
]
