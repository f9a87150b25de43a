"""Per-token statistics of scored sequences, shared by the benchmarks: answer log-probabilities,
per-token normalised probability, and extraction strength (Carlini et al.'s ES as open-unlearning's
``extraction_strength``: how much of the answer's prefix the model needs before it continues it greedily).
Pure tensor functions, no model, no tokenizer.
"""

from __future__ import annotations

import numpy as np
import torch

from unlearn.data.formatting import IGNORE_INDEX
from unlearn.errors import ConfigError


def answer_token_stats(
    logits: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-probability and argmax correctness of the answer tokens, in one pass.

    Only the answer positions are upcast to fp32, so the (B, T, V) logits are never copied whole.

    Args:
        logits: (B, T, V) model outputs, any float dtype.
        labels: (B, T) token ids, -100 where not scored (prompt, padding).

    Returns:
        logp: (B, T-1) fp32 log-probability of label ``t+1`` given the prefix up to ``t``; 0 where
            not scored.
        correct: (B, T-1) bool, argmax of the logits equals the label; False where not scored.
        valid: (B, T-1) bool, the position is scored.
    """
    if logits.shape[:2] != labels.shape:
        raise ConfigError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree on (B, T)")
    targets = labels[:, 1:]
    valid = targets != IGNORE_INDEX
    sel = logits[:, :-1][valid].float()  # (N, V)
    tgt = targets[valid]
    token_logp = sel.gather(1, tgt[:, None]).squeeze(1) - torch.logsumexp(sel, dim=-1)
    logp = torch.zeros(valid.shape, dtype=torch.float32, device=logits.device)
    logp[valid] = token_logp
    correct = torch.zeros_like(valid)
    correct[valid] = sel.argmax(dim=-1) == tgt
    return logp, correct, valid


def answer_logprob_stats(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer log-probability and answer length of each sequence.

    Args:
        logits: (B, T, V) model outputs.
        labels: (B, T) token ids, -100 where ignored.

    Returns:
        sum_logprob: (B,) fp32 sum of the answer tokens' log-probabilities.
        n_tokens: (B,) int64 number of scored tokens.
    """
    logp, _, valid = answer_token_stats(logits, labels)
    return logp.sum(dim=1), valid.sum(dim=1)


def normalised_prob(
    sum_logprob: torch.Tensor | np.ndarray, n_tokens: torch.Tensor | np.ndarray
) -> torch.Tensor | np.ndarray:
    """Per-token normalised probability ``exp(sum_logprob / n_tokens)`` (geometric mean of token probs).

    Args:
        sum_logprob: (B,) summed log-probabilities.
        n_tokens: (B,) token counts (> 0).

    Returns:
        (B,) probabilities in (0, 1], a tensor if ``sum_logprob`` is one, else a numpy array.
    """
    if isinstance(sum_logprob, torch.Tensor):
        return torch.exp(sum_logprob / n_tokens)
    return np.exp(np.asarray(sum_logprob, dtype=np.float64) / np.asarray(n_tokens, dtype=np.float64))


def extraction_strength(correct: torch.Tensor) -> float:
    """Teacher-forced extraction strength of one answer: share of its tail that argmax reproduces.

    ``ES = 1 - k/L`` with ``k`` the shortest prefix after which every prediction is correct, i.e. the
    length of the trailing run of correct predictions over ``L``. An empty answer scores 0.

    Args:
        correct: (L,) bool, argmax prediction equals the answer token.
    """
    correct = torch.as_tensor(correct, dtype=torch.bool).reshape(-1)
    length = correct.numel()
    if length == 0:
        return 0.0
    wrong = torch.nonzero(~correct).reshape(-1)
    k = int(wrong[-1]) + 1 if wrong.numel() else 0
    return (length - k) / length


def extraction_strength_masked(correct: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Batched extraction strength over the scored positions of each row.

    Args:
        correct: (B, T) bool, argmax prediction equals the label.
        valid: (B, T) bool, the position is an answer token.

    Returns:
        (B,) fp32 ES per row; 0 for rows without scored positions.
    """
    pos = torch.arange(valid.shape[1], device=valid.device)
    last_wrong = torch.where(valid & ~correct, pos, -1).max(dim=1).values  # (B,)
    tail = (valid & (pos > last_wrong[:, None])).sum(dim=1)
    return tail.float() / valid.sum(dim=1).clamp(min=1).float()


def extraction_strength_batch(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-example teacher-forced extraction strength from logits and labels.

    Args:
        logits: (B, T, V) model outputs.
        labels: (B, T) token ids, -100 where ignored.

    Returns:
        (B,) fp32 ES of each example's answer.
    """
    _, correct, valid = answer_token_stats(logits, labels)
    return extraction_strength_masked(correct, valid)
