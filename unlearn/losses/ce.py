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


def shift_mask(m: torch.Tensor) -> torch.Tensor:
    """A (B, T) per-token mask (e.g. the batch's key-phrase ``importance``) aligned with the shifted labels.

    Position t of the CE predicts token t + 1, so its mask entry is ``m[:, t + 1]``: returns (B, T-1).
    """
    if m.dim() != 2:
        raise ConfigError(f"mask shape {tuple(m.shape)} is not (B, T)")
    return m[:, 1:]


def token_kl(logits: torch.Tensor, ref_logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Per-position KL(reference || current) over the vocabulary, in fp32, 0 where not attended.

    As the SatImp reference, TOFU and open-unlearning (``kl_div(log_softmax(current), log_softmax(ref),
    log_target=True)``): every position of the sequence, the prompt included, no label shift.

    Args:
        logits: (B, T, V) of the model being trained.
        ref_logits: (B, T, V) of the frozen reference model.
        attention_mask: (B, T), 1 at attended (non-padding) positions.

    Returns:
        kl (B, T) fp32.
    """
    if logits.dim() != 3 or attention_mask.shape != logits.shape[:2]:
        raise ConfigError(f"logits shape {tuple(logits.shape)} does not match attention mask shape "
                          f"{tuple(attention_mask.shape)}; expected logits (B, T, V) and attention mask (B, T)")
    if ref_logits.shape != logits.shape:
        raise ConfigError(f"reference logits shape {tuple(ref_logits.shape)} != logits shape {tuple(logits.shape)}")
    acc = torch.promote_types(logits.dtype, torch.float32)
    logp = F.log_softmax(logits.to(acc), dim=-1)
    ref_logp = F.log_softmax(ref_logits.to(acc), dim=-1)
    kl = (ref_logp.exp() * (ref_logp - logp)).sum(-1)
    return kl * attention_mask.bool()
