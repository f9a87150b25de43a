"""The quantizers against naive references written here, the layers they convert, and bitsandbytes itself."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from unlearn.attacks.quantize import (
    blockwise_4bit,
    blockwise_int,
    quantized_copy,
    quantized_linear_names,
    rowwise_int8,
)

# bitsandbytes' 4-bit codes, written out: FP4 (E2M1 magnitudes over 6, its smallest non-zero value 1/192
# instead of 1/12), NF4 (QLoRA's normal quantiles, rounded here to 4 decimals: compared with a tolerance)
FP4 = sorted({s * m for m in (0.0, 1 / 192, 1 / 6, 1 / 4, 1 / 3, 1 / 2, 2 / 3, 1.0) for s in (1, -1)})
NF4 = [-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
       0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0]


def naive_4bit(w: torch.Tensor, code: list[float], block: int = 64) -> torch.Tensor:
    """Block by block, value by value: the nearest code value of value / absmax (the lower one on a tie)."""
    flat = w.reshape(-1).tolist()
    out = []
    for start in range(0, len(flat), block):
        chunk = flat[start:start + block]
        absmax = max(abs(v) for v in chunk)
        for v in chunk:
            s = v / absmax if absmax else 0.0
            out.append(min(code, key=lambda c: (abs(s - c), c)) * absmax)
    return torch.tensor(out, dtype=torch.float32).reshape(w.shape)


@pytest.fixture
def weight() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(24, 40, generator=g) * 0.05  # 960 values: 15 blocks of 64, no partial block


@pytest.mark.parametrize("code,table", [("fp4", FP4), ("nf4", NF4)])
def test_blockwise_4bit_is_the_nearest_code_per_block(weight, code, table):
    got = blockwise_4bit(weight, code)
    want = naive_4bit(weight, table)
    # float rounding of code * absmax (the reference multiplies in double), and NF4's table rounded above; a
    # different code would be off by at least 1/192 of the block's absmax
    tol = 1e-7 if code == "fp4" else 1e-4 * float(weight.abs().max())
    torch.testing.assert_close(got, want, atol=tol, rtol=1e-6)
    # at most 15 (FP4) / 16 (NF4) distinct values per block
    per_block = got.reshape(-1, 64)
    assert max(len(torch.unique(b)) for b in per_block) <= len(table)


def test_a_partial_last_block_takes_its_own_absmax():
    w = torch.cat([torch.full((64,), 0.5), torch.tensor([0.01, -0.02, 0.005])])  # 67 values: 64 + 3
    got = blockwise_4bit(w, "fp4")
    torch.testing.assert_close(got, naive_4bit(w, FP4), atol=1e-7, rtol=1e-6)
    assert got[-2] == pytest.approx(-0.02)  # the tail block's absmax is 0.02, not 0.5


def test_int8_rowwise_is_llm_int8s_weight():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(6, 33, generator=g)
    w16 = w.half().float()
    absmax = w16.abs().amax(1, keepdim=True)
    want = torch.round(w16 * 127 / absmax) * absmax / 127
    torch.testing.assert_close(rowwise_int8(w), want, atol=1e-7, rtol=1e-6)
    assert len(torch.unique(rowwise_int8(w)[0])) <= 255


def test_integer_round_to_nearest_is_another_quantizer(weight):
    got = blockwise_int(weight, 4)
    blocks = weight.reshape(-1, 64)
    step = blocks.abs().amax(1, keepdim=True) / 7
    torch.testing.assert_close(got, (torch.round(blocks / step) * step).reshape(weight.shape), atol=1e-8, rtol=0)
    # 15 evenly spaced levels, not FP4's: the two differ on most weights
    assert (got != blockwise_4bit(weight, "fp4")).float().mean() > 0.3


def test_zero_block_stays_zero():
    assert torch.equal(blockwise_4bit(torch.zeros(70), "fp4"), torch.zeros(70))
    assert torch.equal(rowwise_int8(torch.zeros(2, 5)), torch.zeros(2, 5))


def tiny_llama(tie: bool = False) -> nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=192, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, tie_word_embeddings=tie)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return LlamaForCausalLM(cfg).eval()


@pytest.mark.parametrize("tie", [False, True])
def test_converted_layers_are_the_decoder_linears_not_embeddings_nor_head(tie):
    names = quantized_linear_names(tiny_llama(tie))
    per_layer = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                 "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    assert names == [f"model.layers.{i}.{p}" for i in range(2) for p in per_layer]


def test_quantized_copy_changes_only_the_converted_weights():
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = quantized_copy(model, 4)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original is untouched
    converted = {f"{n}.weight" for n in quantized_linear_names(model)}
    for k, v in q.state_dict().items():
        assert torch.equal(v, before[k]) != (k in converted), k


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None,
                    reason="bitsandbytes is not installed (the quant extra): nothing to compare the quantizer with")
@pytest.mark.parametrize("bits,code", [(4, "fp4"), (4, "nf4"), (8, "fp4")])
def test_bitsandbytes_gives_the_same_weights(bits, code):
    """transformers' BitsAndBytesConfig load (the paper's path) and this quantizer: the same layers, the same
    dequantized weights, bit for bit (checked on the weights: bitsandbytes' 8-bit matmul also quantizes the
    activations, README's fidelity table)."""
    from unlearn.attacks.bnb import bnb_quantized, dequantized_weights

    model = tiny_llama()
    theirs = dequantized_weights(bnb_quantized(model, bits, code))
    ours = dict(quantized_copy(model, bits, code).named_modules())
    assert sorted(theirs) == sorted(quantized_linear_names(model))
    for name, w in theirs.items():
        assert torch.equal(ours[name].weight.float(), w), name
