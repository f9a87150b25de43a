"""CausalLMWithLoss: the loss path it runs, on a tiny Llama built from config (CPU; CUDA where marked)."""

from __future__ import annotations

import pytest
import torch

from unlearn.errors import ConfigError
from unlearn.losses import build_method, chunked_ce, fused_lm_term, shift_labels
from unlearn.losses import head
from unlearn.models.load import ModelConfig, build_tiny
from unlearn.train.module import CausalLMWithLoss

VOCAB = 97
# beta1 = 1: p^1 (1-p)^0.1 keeps the per-token weights of a random-init model (p ~ 1/V) well above 0
METHOD = {"weighting": "satimp", "beta1": 1.0, "beta2": 0.1}


def tiny_module(dtype: torch.dtype = torch.float32) -> CausalLMWithLoss:
    lm = build_tiny(ModelConfig(name="tiny-2l"), VOCAB, seed=0, pad_id=0, bos_id=1, eos_id=2)
    return CausalLMWithLoss(lm.to(dtype))


def batch(B: int = 3, T: int = 12, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    labels = ids.clone()
    labels[:, :5] = -100  # the prompt
    labels[1, 9:] = -100  # padding
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}


def loss_and_grads(module: CausalLMWithLoss, b: dict[str, torch.Tensor], **kw):
    module.zero_grad(set_to_none=True)
    method = build_method(**METHOD)
    out = module(b["input_ids"], b["attention_mask"], b["labels"], mode="term", term=method.forget_term, **kw)
    out.loss.backward()
    return out.loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


def old_fused_forward(module: CausalLMWithLoss, b: dict[str, torch.Tensor]):
    """What ``forward(..., fused=True)`` ran before the loss paths: fused_lm_term on the backbone's states."""
    module.zero_grad(set_to_none=True)
    method = build_method(**METHOD)
    hidden = module._hidden(b["input_ids"], b["attention_mask"])
    loss = fused_lm_term(hidden, module.lm.get_output_embeddings().weight, b["labels"], method.forget_term).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in module.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("path", ["auto", "chunked", "fused"])
def test_auto_on_cpu_is_the_old_fused_head_to_the_bit(path):
    module, b = tiny_module(), batch()
    old_loss, old_grads = old_fused_forward(module, b)
    loss, grads = loss_and_grads(module, b, loss_path=path)
    assert torch.equal(loss, old_loss)
    assert grads.keys() == old_grads.keys() and all(torch.equal(grads[k], old_grads[k]) for k in grads)


def test_reference_ce_on_cpu_is_the_old_chunked_ce_to_the_bit():
    module, b = tiny_module(), batch()
    with torch.no_grad():
        target, mask = shift_labels(b["labels"])
        rows = module._hidden(b["input_ids"], b["attention_mask"])[:, :-1][mask]
        rows_ce, _ = chunked_ce(rows, module.lm.get_output_embeddings().weight, target[mask])
        ce = module(b["input_ids"], b["attention_mask"], b["labels"], mode="ce", loss_path="auto")
    assert torch.equal(ce[mask], rows_ce) and not ce[~mask].any()


def test_chunked_agrees_with_naive():
    module, b = tiny_module(), batch()
    naive_loss, naive_grads = loss_and_grads(module, b, loss_path="naive")
    loss, grads = loss_and_grads(module, b, loss_path="auto")
    torch.testing.assert_close(loss, naive_loss, atol=1e-6, rtol=1e-5)
    for k in naive_grads:
        torch.testing.assert_close(grads[k], naive_grads[k], atol=1e-6, rtol=1e-4, msg=k)


def test_forced_kernel_on_cpu_is_refused_with_the_value(monkeypatch):
    monkeypatch.setattr(head, "kernel_installed", lambda path: True)
    module, b = tiny_module(), batch()
    with pytest.raises(ConfigError, match=r"optim.loss_path='liger' runs only on CUDA"):
        loss_and_grads(module, b, loss_path="liger")


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["cce", "liger"])
def test_kernel_path_agrees_with_naive_on_cuda(path):
    """A bf16 tiny Llama on CUDA: the kernel's loss and parameter gradients vs the naive path's."""
    pytest.importorskip(head.KERNELS[path][0])
    module, b = tiny_module(torch.bfloat16).cuda(), {k: v.cuda() for k, v in batch(B=4, T=64).items()}
    naive_loss, naive_grads = loss_and_grads(module, b, loss_path="naive")
    loss, grads = loss_and_grads(module, b, loss_path=path)
    assert abs(float(loss) - float(naive_loss)) <= 2e-2 * abs(float(naive_loss))
    for k, g in naive_grads.items():
        err = float((grads[k].double() - g.double()).norm() / g.double().norm().clamp_min(1e-30))
        assert err <= 5e-2, f"{path} {k}: {err:.2e}"
