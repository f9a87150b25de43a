"""Weight quantizers of the quantization attack, as pure tensor functions, and the model they give.

Each function takes a weight and returns its dequantized copy (same shape and dtype): what a layer of
the quantized model multiplies by. They compute what bitsandbytes computes (0.50, the ``quant`` extra):

- ``blockwise_4bit`` (``Linear4bit``, ``BitsAndBytesConfig(load_in_4bit=True)``): the weight flattened in
  row-major order, cut into blocks of ``blocksize`` (64) values (the last block may be shorter); each block
  scaled by the reciprocal of its largest magnitude (``absmax``, kept in fp32), each scaled value replaced
  by the nearest value of a 16-entry code (FP4 by default, or NF4), times ``absmax``.
- ``rowwise_int8`` (``Linear8bitLt``, ``load_in_8bit=True``): the weight cast to fp16, each output row
  scaled by 127 over its largest magnitude and rounded to an integer in [-127, 127], times absmax / 127.
- ``blockwise_int`` is plain symmetric integer round-to-nearest per block (not a bitsandbytes code).

Which layers: those transformers' bitsandbytes integration converts (``quantized_linear_names``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

# bitsandbytes' FP4 code (1 sign, 2 exponent, 1 mantissa bits, its own bias), as its kernels decode it:
# the magnitudes of the 8 positive codes; with their negatives, 15 distinct values (0 twice).
FP4_MAGNITUDES: tuple[float, ...] = (0.0, 1 / 192, 1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0)
# bitsandbytes' NF4 code (QLoRA): quantiles of a normal distribution, scaled to [-1, 1], with an exact 0.
NF4_CODE: tuple[float, ...] = (
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
)


def code_values(code: str) -> torch.Tensor:
    """The sorted distinct values of 4-bit code ``code`` (``fp4``, ``nf4``) in fp32."""
    if code == "fp4":
        vals = sorted({*FP4_MAGNITUDES, *(-m for m in FP4_MAGNITUDES)})
    elif code == "nf4":
        vals = list(NF4_CODE)
    else:
        raise ValueError(f"unknown 4-bit code {code!r}; valid: fp4, nf4")
    return torch.tensor(vals, dtype=torch.float32)


def _blocks(w: torch.Tensor, blocksize: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``w`` flattened into zero-padded blocks (nb, blocksize) fp32 and each block's absmax (nb,)."""
    flat = w.detach().reshape(-1).float()
    pad = (-flat.numel()) % blocksize
    blocks = torch.nn.functional.pad(flat, (0, pad)).reshape(-1, blocksize)  # zeros leave each absmax as is
    return blocks, blocks.abs().amax(dim=1)


def blockwise_4bit(w: torch.Tensor, code: str = "fp4", blocksize: int = 64) -> torch.Tensor:
    """``w`` through bitsandbytes' 4-bit quantization and back (``Linear4bit``'s weight).

    Args:
        w: any shape; flattened row-major into blocks of ``blocksize``.
        code: ``fp4`` or ``nf4``.
    Returns:
        Same shape and dtype: each value the nearest code value of value / absmax, times absmax; a value
        exactly halfway goes to the lower code (``torch.bucketize``, as bitsandbytes does).
    """
    values = code_values(code).to(w.device)
    blocks, absmax = _blocks(w, blocksize)
    scaled = torch.clamp(blocks * (1.0 / absmax.clamp(min=1e-38)).unsqueeze(1), -1.0, 1.0)
    idx = torch.bucketize(scaled, (values[:-1] + values[1:]) / 2)
    out = values[idx] * absmax.unsqueeze(1)
    return out.reshape(-1)[: w.numel()].reshape(w.shape).to(w.dtype)


def blockwise_int(w: torch.Tensor, bits: int = 4, blocksize: int = 64) -> torch.Tensor:
    """``w`` through symmetric integer round-to-nearest per block: levels -L..L with L = 2**(bits-1) - 1
    (7 at 4 bits) of the block's absmax; ties to even (``torch.round``). Same shape and dtype."""
    levels = 2 ** (bits - 1) - 1
    blocks, absmax = _blocks(w, blocksize)
    step = (absmax / levels).clamp(min=1e-38).unsqueeze(1)
    out = torch.round(blocks / step).clamp(-levels, levels) * step
    return out.reshape(-1)[: w.numel()].reshape(w.shape).to(w.dtype)


def rowwise_int8(w: torch.Tensor) -> torch.Tensor:
    """``w`` (out, in) through LLM.int8's weight quantization and back (``Linear8bitLt``'s weight).

    bitsandbytes casts the weight to fp16, takes each row's absmax (fp32), stores
    ``round(w16 * 127 / absmax)`` as int8 and multiplies it back by ``absmax / 127``. Same shape and dtype.
    """
    w16 = w.detach().to(torch.float16)
    absmax = w16.abs().amax(dim=1).float()
    q = torch.round(w16 * (127.0 / absmax.unsqueeze(1))).to(torch.int8)
    return (q.float() * (absmax * (1.0 / 127.0)).unsqueeze(1)).to(w.dtype)


def quantized_linear_names(model: nn.Module) -> list[str]:
    """Names of the modules transformers' bitsandbytes integration replaces (transformers 5.24
    ``replace_with_bnb_linear`` with ``get_keys_to_not_convert``): every module whose type is exactly
    ``nn.Linear``, except the output embeddings (``lm_head``), tied weights and the module of the model's
    last parameter. A skip key matches a module named by it, one under it, or one ending with it."""
    skip: set[str] = set()
    tied = getattr(model, "all_tied_weights_keys", None) or {}
    skip |= set(tied) | set(tied.values())
    params = list(model.named_parameters())
    if params:
        skip.add(params[-1][0])
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    skip |= {name for name, m in model.named_modules() if out_emb is not None and m is out_emb}
    keys = {k.removesuffix(".weight") for k in skip}

    def kept(name: str) -> bool:
        return not any(name == k or name.startswith(k + ".") or name.endswith(k) for k in keys)

    return [name for name, m in model.named_modules() if type(m) is nn.Linear and kept(name)]


def quantizer(bits: int, code: str, blocksize: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The weight function of a ``bits``-wide attack: 4 bits with ``code`` (fp4 / nf4 / int4), 8 bits LLM.int8."""
    if bits == 8:
        return rowwise_int8
    if code == "int4":
        return lambda w: blockwise_int(w, 4, blocksize)
    return lambda w: blockwise_4bit(w, code, blocksize)


@torch.no_grad()
def quantized_copy(model: nn.Module, bits: int, code: str = "fp4", blocksize: int = 64) -> nn.Module:
    """A copy of ``model`` whose converted Linear weights (``quantized_linear_names``) are replaced by their
    quantized values; biases, norms and embeddings unchanged (as bitsandbytes keeps them)."""
    fn = quantizer(bits, code, blocksize)
    out = copy.deepcopy(model)
    modules = dict(out.named_modules())
    for name in quantized_linear_names(out):
        w = modules[name].weight
        w.copy_(fn(w))
    return out.eval()
