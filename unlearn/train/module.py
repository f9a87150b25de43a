"""The module that training wraps and shards: a causal LM whose forward returns a loss term or CE.

The loss is computed *inside* ``forward`` so that a sharded wrapper (FSDP2) has the LM head's weight
gathered while the fused head uses it, and its gradient flows back to the sharded parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

from unlearn.data.formatting import IGNORE_INDEX
from unlearn.losses import LossOutput, head_ce, head_lm_term, resolve_loss_path, token_ce, token_kl

Term = Callable[[torch.Tensor, torch.Tensor], LossOutput]


class CausalLMWithLoss(nn.Module):
    """Wraps an HF causal LM (``.model`` backbone + ``.lm_head``).

    ``forward(input_ids, attention_mask, labels, mode=...)``:
      - ``"term"``: ``term(ce (B, T-1), mask (B, T-1))`` through the LM-head path ``loss_path`` (``chunked``,
        ``cce``, ``liger``; ``auto`` resolved for the hidden states' device and dtype) or full logits (``naive``);
      - ``"kl_term"``: ``term(kl (B, T), attention_mask (B, T))`` with per-position KL(``ref_logits`` || current)
        over the vocabulary at every attended position, no label shift (needs full logits);
      - ``"act_term"``: ``term(h (B, T, H), mask (B, T))`` with ``h`` the output of decoder layer ``layer``
        and ``mask`` the positions whose label is not ignored (unshifted); the LM head is not used (RMU);
      - ``"acts"``: that layer's output (B, T, H), no graph (the frozen model's, for RMU's retain term);
      - ``"ce"``: per-token CE (B, T-1), no graph (reference model); ``"logits"``: (B, T, V).
    """

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm

    def _backbone(self) -> nn.Module:
        return self.lm.get_decoder() if hasattr(self.lm, "get_decoder") else self.lm.model

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._backbone()(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    def _layer_output(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, layer: int) -> torch.Tensor:
        """The output (B, T, H) of decoder layer ``layer``, captured by a forward hook on it (under FSDP2 the
        hooked module is the sharded layer: its output is the gathered forward's)."""
        captured: list[torch.Tensor] = []

        def hook(module, args, output) -> None:
            captured.append(output[0] if isinstance(output, tuple) else output)

        handle = self._backbone().layers[layer].register_forward_hook(hook)
        try:
            self._backbone()(input_ids=input_ids, attention_mask=attention_mask)
        finally:
            handle.remove()
        return captured[0]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor, *,
                mode: Literal["term", "kl_term", "act_term", "acts", "ce", "logits"] = "term",
                term: Term | None = None, loss_path: str = "chunked", ref_logits: torch.Tensor | None = None,
                layer: int | None = None):
        if mode in ("act_term", "acts"):
            h = self._layer_output(input_ids, attention_mask, layer)
            return h.detach() if mode == "acts" else term(h, labels != IGNORE_INDEX)
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


class AdaptersOff:
    """The frozen reference of a LoRA policy: the policy's own module called with its adapters switched off
    (peft's ``disable_adapter()``), i.e. the base model, without a second copy of it. Called as the module
    is (``mode="ce"`` / ``"logits"`` / ``"acts"``), under ``torch.no_grad()`` by the loop.

    ``module``: the ``CausalLMWithLoss`` around a ``PeftModel`` (inside DDP: its ``.module``; under FSDP2 the
    sharded module itself, whose forward gathers the shards as usual). Nothing of it is trained here.
    """

    def __init__(self, module: CausalLMWithLoss) -> None:
        self.module = module

    def __call__(self, *args, **kwargs):
        with self.module.lm.disable_adapter():
            return self.module(*args, **kwargs)


def decoder_layers(lm: nn.Module) -> nn.ModuleList:
    """The decoder layers of an HF causal LM (``model.layers``)."""
    backbone = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model
    return backbone.layers


def restrict_trainable(lm: nn.Module, pattern: str | None, layer: int | None) -> list[str]:
    """RMU's setup on the unwrapped HF model, before it is sharded: check that decoder layer ``layer``
    exists and train only the parameters whose names match ``pattern`` in full (``pattern`` None: all).

    Returns the trainable parameter names. Raises ConfigError naming the layer count or the pattern.
    """
    from unlearn.errors import ConfigError
    from unlearn.losses.rmu import parameter_selection

    names = [n for n, _ in lm.named_parameters()]
    if layer is not None:
        n_layers = len(decoder_layers(lm))
        if not 0 <= layer < n_layers:
            raise ConfigError(f"method.layer={layer} is out of range for this model's {n_layers} decoder layers; "
                              f"valid: 0 to {n_layers - 1}")
    if pattern is None:
        return names
    chosen = set(parameter_selection(names, pattern))
    for n, p in lm.named_parameters():
        p.requires_grad_(n in chosen)
    return [n for n in names if n in chosen]
