"""The quantization attack's ``bitsandbytes`` backend: the model reloaded as the paper's code loads it.

Zhang et al. load the unlearned checkpoint with ``from_pretrained(..., quantization_config=
BitsAndBytesConfig(load_in_4bit=True))`` (or ``load_in_8bit=True``). This backend does the same from a
temporary copy of the model: it is the path the paper ran, kept as the reference the ``torch`` backend is
tested against (bitsandbytes is an optional extra; on CPU it runs without the optional kernels package and
may repack weights at the first forward, so figures can differ slightly between CPU models).
"""

from __future__ import annotations

import tempfile

import torch
from torch import nn


def bnb_quantized(model: nn.Module, bits: int, code: str = "fp4") -> nn.Module:
    """``model`` (a transformers ``PreTrainedModel``) reloaded with bitsandbytes' ``bits``-wide Linear layers
    (4: ``code`` fp4 / nf4, compute in fp32, blocks of 64; 8: LLM.int8 with transformers' defaults), on its device."""
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if bits == 4:
        qcfg = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=code)
    else:
        qcfg = BitsAndBytesConfig(load_in_8bit=True)
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    with tempfile.TemporaryDirectory(prefix="unlearn-bnb-") as tmp:
        model.save_pretrained(tmp)
        out = AutoModelForCausalLM.from_pretrained(tmp, quantization_config=qcfg, dtype=dtype,
                                                   device_map={"": str(device)})
    return out.eval()


def dequantized_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The fp32 weight each bitsandbytes Linear layer of ``model`` multiplies by, by module name."""
    import bitsandbytes as bnb
    import bitsandbytes.functional as F

    out: dict[str, torch.Tensor] = {}
    for name, m in model.named_modules():
        if isinstance(m, bnb.nn.Linear4bit):
            out[name] = F.dequantize_4bit(m.weight.data, m.weight.quant_state).float()
        elif isinstance(m, bnb.nn.Linear8bitLt):
            scb = m.weight.SCB if getattr(m.weight, "SCB", None) is not None else m.state.SCB
            out[name] = m.weight.data.float() * (scb.float() * (1.0 / 127.0)).unsqueeze(1)
    return out
