"""The LM-head dispatch: which path runs where, and every path's per-token CE against a naive reference.

The ``cce`` and ``liger`` kernels need CUDA and the ``gpu`` extra: their tests are marked ``gpu`` (skipped
without CUDA) and skip where the package is missing.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import torch
from packaging.requirements import Requirement

from unlearn.errors import ConfigError
from unlearn.losses import build_method, fused_lm_term, token_ce
from unlearn.losses import head
from unlearn.losses.head import check_loss_path, head_ce, head_lm_term, head_token_ce, resolve_loss_path

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def installed(monkeypatch):
    """Pretend that the given kernels' packages are installed (and no others)."""

    def set_installed(*paths: str) -> None:
        monkeypatch.setattr(head, "kernel_installed", lambda path: path in paths)

    return set_installed


def rows_case(dtype=torch.float64, N=23, H=16, V=37, seed=0, device=CPU):
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(N, H, generator=g, dtype=torch.float64) * 0.7
    weight = torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5
    targets = torch.randint(0, V, (N,), generator=g)
    return rows.to(device, dtype), weight.to(device, dtype), targets.to(device)


def reference_ce(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-token CE written plainly, in fp64: lse(logits) - logit of the target."""
    logits = rows.double() @ weight.double().T
    return torch.logsumexp(logits, 1) - logits.gather(1, targets[:, None]).squeeze(1)


def weighted_loss(ce: torch.Tensor) -> torch.Tensor:
    """SatImp-like sum(w * ce): w = p^2 (1 - p)^0.5 from the detached CE (>= fp32), p = exp(-ce)."""
    c = ce.detach().to(torch.promote_types(ce.dtype, torch.float32))
    w = torch.exp(-c) ** 2 * (-torch.expm1(-c)) ** 0.5
    return -(w * ce).sum() / ce.numel()


def value_and_grads(fn, rows, weight, targets):
    r, w = rows.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    ce = fn(r, w, targets)
    weighted_loss(ce).backward()
    return ce.detach(), r.grad, w.grad


# --- which path runs -------------------------------------------------------------------------------

def test_auto_is_chunked_on_cpu_even_with_the_kernels_installed(installed):
    installed("cce", "liger")
    assert resolve_loss_path("auto", CPU) == "chunked"
    assert resolve_loss_path("auto", CPU, torch.bfloat16) == "chunked"


def test_auto_on_cuda_takes_an_installed_kernel_that_fits_the_dtype(installed):
    installed()
    assert resolve_loss_path("auto", CUDA, torch.bfloat16) == "chunked"
    installed("cce", "liger")
    assert resolve_loss_path("auto", CUDA, torch.bfloat16) == "cce"
    assert resolve_loss_path("auto", CUDA, torch.float32) == "liger"  # CCE's backward takes fp16 / bf16 only
    installed("liger")
    assert resolve_loss_path("auto", CUDA, torch.bfloat16) == "liger"
    installed("cce")
    assert resolve_loss_path("auto", CUDA, torch.float32) == "chunked"


def test_fused_is_the_old_name_of_chunked():
    assert check_loss_path("fused") == "chunked"
    assert resolve_loss_path("fused", CPU) == "chunked"
    assert resolve_loss_path("naive", CUDA) == "naive"


def test_unknown_path_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"optim.loss_path='triton' is not valid; valid: auto, chunked, naive, "
                                          r"cce, liger \(and 'fused' for chunked\)"):
        check_loss_path("triton")


@pytest.mark.parametrize("path,dist", [("cce", "cut-cross-entropy"), ("liger", "liger-kernel")])
def test_forced_kernel_without_its_package_is_refused(installed, path, dist):
    installed()
    with pytest.raises(ConfigError, match=rf"optim.loss_path='{path}' needs the {dist} package .* not installed; "
                                          r"valid: install the GPU extra \(pip install -e '\.\[gpu\]'\) and run on "
                                          r"CUDA, or optim.loss_path=chunked / auto"):
        check_loss_path(path)


@pytest.mark.parametrize("path", ["cce", "liger"])
def test_forced_kernel_on_cpu_is_refused(installed, path):
    installed("cce", "liger")
    with pytest.raises(ConfigError, match=rf"optim.loss_path='{path}' runs only on CUDA .* device is 'cpu'; "
                                          r"valid here: optim.loss_path=chunked, naive or auto"):
        resolve_loss_path(path, CPU)


def test_cce_on_fp32_hidden_states_is_refused(installed):
    installed("cce", "liger")
    with pytest.raises(ConfigError, match=r"optim.loss_path='cce' takes hidden states of dtype float16, bfloat16, "
                                          r"got float32; valid: .* optim.loss_path=liger / auto"):
        resolve_loss_path("cce", CUDA, torch.float32)
    assert resolve_loss_path("liger", CUDA, torch.float32) == "liger"


def test_unresolved_path_is_refused_by_the_dispatch():
    with pytest.raises(ConfigError, match=r"LM-head path 'auto' is not a resolved one"):
        head_token_ce(*rows_case(), "auto")


def test_the_gpu_extra_declares_the_kernels_and_ci_stays_without_it():
    """``pip install -e '.[gpu]'`` brings both kernels (Liger at least 0.8.2, PR #1298); CI installs ``.[test]``."""
    root = Path(__file__).resolve().parents[3]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    reqs = {Requirement(r).name: Requirement(r).specifier for r in extras["gpu"]}
    assert set(reqs) == {dist for _, dist in head.KERNELS.values()}
    assert "0.8.1" not in reqs["liger-kernel"] and "0.8.2" in reqs["liger-kernel"]
    assert "25.1.1" in reqs["cut-cross-entropy"]
    assert not {Requirement(r).name for r in extras["test"]} & set(reqs)
    assert "'.[test]'" in (root / ".ci" / "run").read_text()
    pinned = {line.split("==")[0].strip().lower() for line in (root / "constraints.txt").read_text().splitlines()}
    assert not pinned & set(reqs)


# --- the CPU paths, value and gradient ------------------------------------------------------------

@pytest.mark.parametrize("path", ["chunked", "naive"])
@pytest.mark.parametrize("chunk_elements", [None, 50, 23 * 37])
def test_token_ce_equals_the_reference(path, chunk_elements):
    """Per-token CE and the gradient of sum(w * ce) with w from the detached CE (the weighted losses)."""
    rows, weight, targets = rows_case()
    ref = value_and_grads(reference_ce, rows, weight, targets)
    got = value_and_grads(lambda r, w, t: head_token_ce(r, w, t, path, chunk_elements=chunk_elements),
                          rows, weight, targets)
    for g, r, what in zip(got, ref, ("ce", "grad rows", "grad weight")):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-10, msg=what)


def test_chunked_token_ce_fp32_and_weight_without_grad():
    rows, weight, targets = rows_case(torch.float32)
    r = rows.clone().requires_grad_(True)
    ce = head_token_ce(r, weight, targets, "chunked", chunk_elements=64)
    assert ce.dtype == torch.float32
    weighted_loss(ce).backward()
    r_ref = rows.double().requires_grad_(True)
    weighted_loss(reference_ce(r_ref, weight, targets)).backward()
    torch.testing.assert_close(r.grad, r_ref.grad.float(), atol=1e-6, rtol=1e-5)


def lm_case(dtype=torch.float32, B=3, T=10, H=16, V=37, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g).to(dtype)
    weight = (torch.randn(V, H, generator=g) * 0.3).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    labels[:, :4] = -100
    labels[1, 8:] = -100
    return hidden, weight, labels


def run_term(fn, hidden, weight, labels):
    h, w = hidden.clone().requires_grad_(True), weight.clone().requires_grad_(True)
    loss = fn(h, w, labels).loss
    loss.backward()
    return loss.detach(), h.grad, w.grad


def test_chunked_lm_term_is_fused_lm_term_bit_for_bit():
    """loss_path chunked (and auto on CPU) is the fused head of before the dispatch, to the last bit."""
    method = build_method("satimp", beta1=5.0, beta2=0.1)
    hidden, weight, labels = lm_case()
    old = run_term(lambda h, w, y: fused_lm_term(h, w, y, method.forget_term), hidden, weight, labels)
    new = run_term(lambda h, w, y: head_lm_term(h, w, y, method.forget_term, resolve_loss_path("auto", CPU)),
                   hidden, weight, labels)
    for a, b in zip(new, old):
        assert torch.equal(a, b)


def test_naive_lm_term_equals_full_logits():
    method = build_method("satimp", beta1=5.0, beta2=0.1)
    hidden, weight, labels = lm_case(torch.float64)

    def full_logits(h, w, y):
        ce, mask = token_ce(h @ w.T, y)
        return method.forget_term(ce, mask)

    ref = run_term(full_logits, hidden, weight, labels)
    got = run_term(lambda h, w, y: head_lm_term(h, w, y, method.forget_term, "naive"), hidden, weight, labels)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10)


def test_head_ce_without_answer_tokens_is_zero():
    hidden, weight, labels = lm_case()
    labels[:] = -100
    for path in ("chunked", "naive"):
        ce = head_ce(hidden, weight, labels, path)
        assert ce.shape == (3, 9) and not ce.any()


# --- the CUDA kernels (not run without a GPU) -----------------------------------------------------

KERNEL_TOLERANCE = {torch.float32: 1e-4, torch.bfloat16: 2e-2}  # relative, of the error's norm


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def kernel_or_skip(path: str, dtype: torch.dtype) -> None:
    pytest.importorskip(head.KERNELS[path][0])
    if dtype not in head.KERNEL_DTYPES[path]:
        pytest.skip(f"{path} does not take {dtype}")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("path", ["cce", "liger"])
def test_kernel_token_ce_equals_naive_on_cuda(path, dtype):
    """Per-token CE and the gradient of sum(w * ce) (a per-token upstream gradient) vs the fp64 reference,
    no worse than the naive path in the same dtype (odd sizes: no tile divides them)."""
    kernel_or_skip(path, dtype)
    rows, weight, targets = rows_case(dtype, N=1000, H=192, V=5003, device=CUDA)
    ref = value_and_grads(reference_ce, rows, weight, targets)
    naive = value_and_grads(lambda r, w, t: head_token_ce(r, w, t, "naive"), rows, weight, targets)
    got = value_and_grads(lambda r, w, t: head_token_ce(r, w, t, path), rows, weight, targets)
    assert got[0].shape == (1000,) and got[0].dtype == torch.float32
    for g, n, r, what in zip(got, naive, ref, ("ce", "grad rows", "grad weight")):
        err = rel_err(g, r)
        assert err <= max(KERNEL_TOLERANCE[dtype], 2 * rel_err(n, r)), f"{path} {what}: {err:.2e}"


def confident_case(B=4, T=64, H=128, V=4099, seed=0):
    """bf16 hidden states and head whose logits (std ~3) make every other answer token the argmax, so
    that SatImp's weights p^5 (1-p)^0.1 are far from 0 there (a random target has p ~ 1e-4)."""
    hidden, weight, labels = lm_case(torch.float32, B=B, T=T, H=H, V=V, seed=seed)
    weight = weight * 3 / (0.3 * H ** 0.5)
    hidden, weight = hidden.bfloat16(), weight.bfloat16()
    top = (hidden[:, :-1].float() @ weight.float().T).argmax(-1)
    confident = (labels[:, 1:] != -100) & (torch.arange(T - 1) % 2 == 0)
    labels[:, 1:] = torch.where(confident, top, labels[:, 1:])
    return hidden, weight, labels


@pytest.mark.gpu
@pytest.mark.parametrize("path", ["cce", "liger"])
def test_kernel_lm_term_equals_naive_on_cuda(path):
    """The whole forget term (SatImp, ignored positions) through the kernel in bf16 vs the naive path in
    fp32 on the same bf16 inputs: no worse than the naive path in bf16."""
    kernel_or_skip(path, torch.bfloat16)
    method = build_method("satimp", beta1=5.0, beta2=0.1)
    hidden, weight, labels = (t.cuda() for t in confident_case())

    def term(p, dtype=None):
        return lambda h, w, y: head_lm_term(h.to(dtype or h.dtype), w.to(dtype or w.dtype), y, method.forget_term, p)

    ref = run_term(term("naive", torch.float32), hidden, weight, labels)
    naive = run_term(term("naive"), hidden, weight, labels)
    got = run_term(term(path), hidden, weight, labels)
    for g, n, r, what in zip(got, naive, ref, ("loss", "grad hidden", "grad weight")):
        err = rel_err(g, r)
        assert err <= max(KERNEL_TOLERANCE[torch.bfloat16], 2 * rel_err(n, r)), f"{path} {what}: {err:.2e}"
    assert not got[1][:, :3].any()  # positions that predict prompt tokens carry no loss


@pytest.mark.gpu
def test_auto_on_cuda_uses_an_installed_kernel():
    available = [k for k in head.AUTO_KERNELS if head.kernel_installed(k)]
    if not available:
        pytest.skip("the gpu extra is not installed")
    assert resolve_loss_path("auto", CUDA, torch.bfloat16) == available[0]
