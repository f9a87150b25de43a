"""The fused LM head + weighted CE equals the naive path (full logits) in value and gradients."""

import pytest
import torch

from unlearn.losses import build_method, fused_lm_term, fused_weighted_lm_loss, token_ce

SETUPS = [
    ("satimp", {}),
    ("satimp", {"beta1": 2.0, "beta2": 0.5}),
    ("simsat", {"beta": 2.0}),
    ("simimp", {"beta": 0.5}),
    ("wga", {"beta": 1.0}),
    ("uniform", {}),
    ("satimp", {"granularity": "instance"}),
    ("satimp", {"granularity": "group", "group_size": 3}),
    ("satimp", {"granularity": "batch"}),
    ("uniform", {"sampling": "topk", "k": 0.5}),
    ("uniform", {"sampling": "bottomk", "k": 0.3}),
    ("satimp", {"objective": "simnpo"}),
]


def make(dtype=torch.float32, B=3, T=10, H=16, V=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=dtype)
    weight = torch.randn(V, H, generator=g, dtype=dtype) * 0.3
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :4] = -100
    labels[1, 8:] = -100
    return hidden, weight, labels


def naive_and_fused(method, hidden, weight, labels, chunk_elements=40):
    h1, w1 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ce, mask = token_ce(h1 @ w1.T, labels)
    naive = method.forget_term(ce, mask, generator=torch.Generator().manual_seed(0)).loss
    naive.backward()
    h2, w2 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    fused = fused_lm_term(h2, w2, labels, lambda c, m: method.forget_term(c, m, generator=torch.Generator().manual_seed(0)),
                          chunk_elements=chunk_elements).loss
    fused.backward()
    return (naive, h1.grad, w1.grad), (fused, h2.grad, w2.grad)


@pytest.mark.parametrize("name,params", SETUPS, ids=[f"{n}-{'-'.join(map(str, p.values()))}" for n, p in SETUPS])
def test_fused_equals_naive_fp32(name, params):
    method = build_method(name, **params)
    (nl, nh, nw), (fl, fh, fw) = naive_and_fused(method, *make())
    assert abs(float(nl) - float(fl)) <= 1e-5 * max(1.0, abs(float(nl)))
    torch.testing.assert_close(fh, nh, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fw, nw, atol=1e-5, rtol=1e-5)


def test_fused_random_sampling_same_generator_same_result():
    method = build_method("uniform", sampling="random", k=0.5, s=0.8)
    (nl, nh, nw), (fl, fh, fw) = naive_and_fused(method, *make())
    torch.testing.assert_close(fh, nh, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fw, nw, atol=1e-5, rtol=1e-5)


def test_fused_npo_with_reference_ce():
    hidden, weight, labels = make()
    ref_ce, _ = token_ce(hidden @ (weight * 1.1).T, labels)
    method = build_method("satimp", objective="npo")
    h1, w1 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ce, mask = token_ce(h1 @ w1.T, labels)
    method.forget_term(ce, mask, ref_ce=ref_ce).loss.backward()
    h2, w2 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    fused_lm_term(h2, w2, labels, lambda c, m: method.forget_term(c, m, ref_ce=ref_ce)).loss.backward()
    torch.testing.assert_close(h2.grad, h1.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w2.grad, w1.grad, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("chunk_elements", [1, 7, 1000, 1 << 24])
def test_chunk_size_does_not_change_result(chunk_elements):
    method = build_method("satimp")
    (nl, nh, nw), (fl, fh, fw) = naive_and_fused(method, *make(), chunk_elements=chunk_elements)
    torch.testing.assert_close(fw, nw, atol=1e-5, rtol=1e-5)


def test_gradcheck_float64_uniform():
    hidden, weight, labels = make(torch.float64, B=2, T=6, H=4, V=7)
    method = build_method("uniform", objective="ga")
    f = lambda h, w: fused_lm_term(h, w, labels, lambda c, m: method.forget_term(c, m), chunk_elements=5).loss
    assert torch.autograd.gradcheck(f, (hidden.requires_grad_(True), weight.requires_grad_(True)))


def test_public_entry_point_and_scaled_backward():
    hidden, weight, labels = make()
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = fused_weighted_lm_loss(h, w, labels, method="satimp", beta1=5.0, beta2=0.1)
    (3.0 * loss).backward()
    h1, w1 = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ce, mask = token_ce(h1 @ w1.T, labels)
    (3.0 * build_method("satimp").forget_term(ce, mask).loss).backward()
    torch.testing.assert_close(h.grad, h1.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(w.grad, w1.grad, atol=1e-5, rtol=1e-5)


# bf16 inputs: GEMMs in bf16 (as the naive path's head), log-sum-exp and weights in fp32.
# Documented tolerance: loss within 2e-2 relative, gradients within 5e-2 relative of the fp32 reference norm.
BF16_LOSS_RTOL = 2e-2
BF16_GRAD_RTOL = 5e-2


def test_bf16_inputs_give_fp32_weights_and_stay_close():
    hidden, weight, labels = make()
    method = build_method("satimp", beta1=1.0, beta2=0.1)
    captured = {}

    def term(ce, mask):
        captured["dtype"] = ce.dtype
        captured["w_dtype"] = method.weights(ce, mask).dtype
        return method.forget_term(ce, mask)

    hb = hidden.to(torch.bfloat16).requires_grad_(True)
    wb = weight.to(torch.bfloat16).requires_grad_(True)
    loss = fused_lm_term(hb, wb, labels, term).loss
    loss.backward()
    assert captured == {"dtype": torch.float32, "w_dtype": torch.float32}
    assert hb.grad.dtype == torch.bfloat16 and wb.grad.dtype == torch.bfloat16
    (nl, nh, nw), _ = naive_and_fused(method, hidden, weight, labels)
    assert abs(float(loss) - float(nl)) <= BF16_LOSS_RTOL * abs(float(nl))
    assert (hb.grad.float() - nh).norm() <= BF16_GRAD_RTOL * nh.norm()
    assert (wb.grad.float() - nw).norm() <= BF16_GRAD_RTOL * nw.norm()


def test_no_answer_tokens_zero_loss_zero_grad():
    hidden, weight, _ = make()
    labels = torch.full(hidden.shape[:2], -100)
    h = hidden.clone().requires_grad_(True)
    w = weight.clone().requires_grad_(True)
    loss = fused_weighted_lm_loss(h, w, labels)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(h.grad == 0) and torch.all(w.grad == 0)


def test_no_grad_mode_returns_value_only():
    hidden, weight, labels = make()
    with torch.no_grad():
        loss = fused_weighted_lm_loss(hidden, weight, labels)
    ce, mask = token_ce(hidden @ weight.T, labels)
    assert float(loss) == pytest.approx(float(build_method("satimp").forget_term(ce, mask).loss), rel=1e-5)


def test_shape_mismatch_error_names_shapes():
    hidden, weight, labels = make()
    with pytest.raises(ValueError, match=r"hidden shape \(3, 10, 16\).*\(37, 16\).*\(3, 9\)"):
        fused_weighted_lm_loss(hidden, weight, labels[:, :9])


@pytest.mark.gpu
def test_fused_equals_naive_on_cuda():
    hidden, weight, labels = (t.cuda() for t in make())
    method = build_method("satimp")
    (nl, nh, nw), (fl, fh, fw) = naive_and_fused(method, hidden, weight, labels)
    torch.testing.assert_close(fh, nh, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fw, nw, atol=1e-4, rtol=1e-4)
