"""Per-token cross-entropy from logits, with the causal shift: the naive (reference) path."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from unlearn.data.formatting import IGNORE_INDEX
from unlearn.errors import ConfigError


def check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ConfigError naming both shapes unless logits is (B, T, V) and labels is (B, T)."""
    if logits.dim() != 3 or labels.dim() != 2 or logits.shape[:2] != labels.shape:
        raise ConfigError(
            f"logits shape {tuple(logits.shape)} does not match labels shape {tuple(labels.shape)}; "
            "expected logits (B, T, V) and labels (B, T)"
        )


def shift_labels(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets for positions 0..T-2 and their validity mask.

    Args:
        labels: (B, T) token ids, IGNORE_INDEX (-100) where no loss is taken.

    Returns:
        targets (B, T-1) with ignored positions set to 0, mask (B, T-1) bool.
    """
    target = labels[:, 1:]
    mask = target != IGNORE_INDEX
    return target.masked_fill(~mask, 0), mask


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token cross-entropy in fp32 after the causal shift.

    Args:
        logits: (B, T, V) any float dtype.
        labels: (B, T) with -100 at ignored positions.

    Returns:
        ce (B, T-1) fp32, exactly 0 where ignored; mask (B, T-1) bool.
    """
    check_shapes(logits, labels)
    target, mask = shift_labels(labels)
    logp = F.log_softmax(logits[:, :-1].to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
    ce = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    return ce * mask, mask


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-token KL(current || reference) over the vocabulary, in fp32, 0 where ignored.

    Args:
        logits: (B, T, V) of the model being trained.
        ref_logits: (B, T, V) of the frozen reference model.
        labels: (B, T) with -100 at ignored positions (only the mask is used).

    Returns:
        kl (B, T-1) fp32.
    """
    check_shapes(logits, labels)
    if ref_logits.shape != logits.shape:
        raise ConfigError(f"reference logits shape {tuple(ref_logits.shape)} != logits shape {tuple(logits.shape)}")
    _, mask = shift_labels(labels)
    acc = torch.promote_types(logits.dtype, torch.float32)
    logp = F.log_softmax(logits[:, :-1].to(acc), dim=-1)
    ref_logp = F.log_softmax(ref_logits[:, :-1].to(acc), dim=-1)
    kl = (logp.exp() * (logp - ref_logp)).sum(-1)
    return kl * mask
