"""The module that training wraps and shards: a causal LM whose forward returns a loss term or CE.

The loss is computed *inside* ``forward`` so that a sharded wrapper (FSDP2) has the LM head's weight
gathered while the fused head uses it, and its gradient flows back to the sharded parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from unlearn.losses import LossOutput, head_ce, head_lm_term, resolve_loss_path, token_ce, token_kl

Term = Callable[[torch.Tensor, torch.Tensor], LossOutput]


class CausalLMWithLoss(nn.Module):
    """Wraps an HF causal LM (``.model`` backbone + ``.lm_head``).

    ``forward(input_ids, attention_mask, labels, mode=...)``:
      - ``"term"``: ``term(ce (B, T-1), mask (B, T-1))`` through the LM-head path ``loss_path`` (``chunked``,
        ``cce``, ``liger``; ``auto`` resolved for the hidden states' device and dtype) or full logits (``naive``);
      - ``"kl_term"``: ``term(kl (B, T), attention_mask (B, T))`` with per-position KL(``ref_logits`` || current)
        over the vocabulary at every attended position, no label shift (needs full logits);
      - ``"ce"``: per-token CE (B, T-1), no graph (reference model); ``"logits"``: (B, T, V).
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        backbone = self.lm.get_decoder() if hasattr(self.lm, "get_decoder") else self.lm.model
        return backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, *,
                mode: Literal["term", "kl_term", "ce", "logits"] = "term", term: Term | None = None,
                loss_path: str = "chunked", ref_logits: torch.Tensor | None = None):
        head = self.lm.get_output_embeddings()
        if mode in ("term", "ce") and loss_path != "naive":
            hidden = self._hidden(input_ids, attention_mask)
            path = resolve_loss_path(loss_path, hidden.device, hidden.dtype)
            if mode == "term":
                return head_lm_term(hidden, head.weight, labels, term, path)
            return head_ce(hidden, head.weight, labels, path)
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits
        if mode == "logits":
            return logits
        if mode == "ce":
            return token_ce(logits, labels)[0].detach()
        if mode == "kl_term":
            return term(token_kl(logits, ref_logits, attention_mask), attention_mask.bool())
        ce, mask = token_ce(logits, labels)
        return term(ce, mask)
