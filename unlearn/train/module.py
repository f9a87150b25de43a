"""The module that training wraps and shards: a causal LM whose forward returns a loss term or CE.

The loss is computed *inside* ``forward`` so that a sharded wrapper (FSDP2) has the LM head's weight
gathered while the fused head uses it, and its gradient flows back to the sharded parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from unlearn.losses import LossOutput, chunked_ce, fused_lm_term, shift_labels, token_ce, token_kl

Term = Callable[[torch.Tensor, torch.Tensor], LossOutput]


class CausalLMWithLoss(nn.Module):
    """Wraps an HF causal LM (``.model`` backbone + ``.lm_head``).

    ``forward(input_ids, attention_mask, labels, mode=...)``:
      - ``"term"``: ``term(ce (B, T-1), mask (B, T-1))`` through the fused head or full logits;
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
                fused: bool = True, ref_logits: torch.Tensor | None = None):
        head = self.lm.get_output_embeddings()
        if mode == "term" and fused:
            return fused_lm_term(self._hidden(input_ids, attention_mask), head.weight, labels, term)
        if mode == "ce" and fused:
            target, mask = shift_labels(labels)
            hidden = self._hidden(input_ids, attention_mask)[:, :-1][mask]
            ce_rows, _ = chunked_ce(hidden.detach(), head.weight.detach(), target[mask])
            return torch.zeros(mask.shape, dtype=ce_rows.dtype, device=ce_rows.device).masked_scatter(mask, ce_rows)
        logits = self.lm(input_ids=input_ids, attention_mask=attention_mask).logits
        if mode == "logits":
            return logits
        if mode == "ce":
            return token_ce(logits, labels)[0].detach()
        if mode == "kl_term":
            return term(token_kl(logits, ref_logits, attention_mask), attention_mask.bool())
        ce, mask = token_ce(logits, labels)
        return term(ce, mask)
