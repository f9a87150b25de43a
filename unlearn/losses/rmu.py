"""RMU (representation misdirection, Li et al. 2024, the WMDP paper's method) as pure tensor functions.

On forget text, a chosen decoder layer's output activations are pushed towards a fixed random direction
``c`` of norm ``steering_coeff``; on retain text they are kept close to the frozen model's (the ``embed``
retain term). Only the parameters matching ``trainable`` are updated (the reference:
``model.layers.(5|6|7).mlp.down_proj.weight``, steering layer 7, coefficient 20, retain weight 100).

Nothing here receives a model: the loop captures the layer's output (``CausalLMWithLoss``'s ``act_term``
mode) and hands the activations to these functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from unlearn.errors import ConfigError, check_range

# centerforaisafety/wmdp rmu/unlearn.py: layer_ids 5,6,7 with param_ids 6 (each layer's mlp.down_proj.weight),
# layer_id 7; open-unlearning's configs/trainer/RMU.yaml writes the same selection as this pattern
REFERENCE_TRAINABLE = r"model\.layers\.(5|6|7)\.mlp\.down_proj\.weight"


@dataclass(frozen=True)
class RMUParams:
    """RMU's forget term.

    ``layer``: index of the decoder layer whose output is steered (0-based, as ``model.layers[layer]``).
    ``trainable``: a regular expression; the model's parameters whose names (``model.named_parameters()``
    of the Hugging Face model) match it in full are trained, every other one is frozen.
    """

    gamma: float = 1.0
    steering_coeff: float = 20.0
    layer: int = 7
    trainable: str = REFERENCE_TRAINABLE

    def __post_init__(self) -> None:
        check_range("gamma", self.gamma, low=0.0)
        check_range("steering_coeff", self.steering_coeff, low=0.0, low_inclusive=False)
        check_range("layer", self.layer, low=0)
        try:
            re.compile(self.trainable)
        except re.error as e:
            raise ConfigError(f"trainable={self.trainable!r} is not a regular expression ({e}); valid: a pattern "
                              f"matched in full against parameter names, e.g. {REFERENCE_TRAINABLE!r}") from None


@dataclass(frozen=True)
class EmbedParams:
    """``alpha`` scales the activation-matching retain term (the WMDP reference's default retain weight: 100)."""

    alpha: float = 100.0

    def __post_init__(self) -> None:
        check_range("alpha", self.alpha, low=0.0)


def control_vector(dim: int, steering_coeff: float, generator: torch.Generator) -> torch.Tensor:
    """The fixed random direction: ``u / ||u|| * steering_coeff`` with ``u ~ U[0, 1)^dim`` (as the reference's
    ``torch.rand``), drawn from ``generator``. Returns (dim,) fp32 on CPU."""
    u = torch.rand(dim, generator=generator, dtype=torch.float32)
    return u / u.norm() * steering_coeff


def activation_mse(h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-position mean over the hidden dimension of ``(h - target)^2``, in fp32.

    Args:
        h: (B, T, H) activations (carries the gradient).
        target: (B, T, H) activations of the frozen model, or (H,) a control vector broadcast to every position.

    Returns:
        (B, T).
    """
    diff = h.float() - target.to(device=h.device, dtype=torch.float32)
    return diff.pow(2).mean(-1)


def rmu_forget(mse: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's sum over its counted positions of the per-position MSE: mse, mask (B, T) -> (B,)."""
    return (mse * mask).sum(1)


def parameter_selection(names: list[str], pattern: str) -> list[str]:
    """The ``names`` that ``pattern`` matches in full; none is an error naming the pattern and some names."""
    rx = re.compile(pattern)
    chosen = [n for n in names if rx.fullmatch(n)]
    if not chosen:
        sample = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ConfigError(f"method.trainable={pattern!r} matches none of the model's {len(names)} parameters "
                          f"({sample}); valid: a pattern matching some of them in full, e.g. "
                          r"'model\.layers\.(1|2)\.mlp\.down_proj\.weight'")
    return chosen
