"""The LM head + per-token CE, dispatched by loss path (``optim.loss_path``).

Paths:
  - ``chunked``: the pure-PyTorch head of ``unlearn.losses.fused`` (CPU and GPU; vocabulary chunks, never all
    logits). ``fused`` is accepted as its old name.
  - ``naive``: full logits (the reference; the module takes them from the model itself).
  - ``cce``: Cut Cross-Entropy's ``linear_cross_entropy`` (``pip install -e '.[gpu]'``, CUDA only).
  - ``liger``: Liger-Kernel's ``LigerFusedLinearCrossEntropyLoss`` (same extra, CUDA only).
  - ``auto``: on CUDA the first installed kernel of ``AUTO_KERNELS`` that takes the hidden states' dtype,
    else ``chunked``.

Every path gives the per-token CE with a gradient that honours a per-token upstream gradient, so every loss
of the family (``sum(w * ce)`` with ``w`` computed in fp32 from the detached CE, NPO, ...) is a function of
its output. The kernels are imported only when used; the CPU install needs neither.

The ``cce`` and ``liger`` adapters follow the packages' documented APIs and are checked against the naive
path only by the ``gpu``-marked tests (``tests/unlearn/losses/test_head.py``), which need CUDA.
"""

from __future__ import annotations

import importlib.util

import torch
import torch.nn.functional as F

from unlearn.errors import ConfigError
from unlearn.losses.ce import shift_labels
from unlearn.losses.fused import TermFn, check_head_shapes, chunked_ce, chunked_grads, fused_lm_term
from unlearn.losses.method import LossOutput

LOSS_PATHS: tuple[str, ...] = ("auto", "chunked", "naive", "cce", "liger")
ALIASES = {"fused": "chunked"}  # the chunked path's name before the CUDA kernels: existing YAML keeps working
# path -> (module to import, distribution to install); both come with the ``gpu`` extra
KERNELS: dict[str, tuple[str, str]] = {"cce": ("cut_cross_entropy", "cut-cross-entropy"),
                                       "liger": ("liger_kernel", "liger-kernel")}
# CCE first: its backward recomputes the logits blockwise and takes the per-token gradient natively;
# Liger's reduction='none' recomputes them too (>= 0.8.2), with a host sync per call.
AUTO_KERNELS = ("cce", "liger")
# Hidden-state dtypes each kernel takes: CCE's backward asserts fp16 / bf16 embeddings.
KERNEL_DTYPES: dict[str, tuple[torch.dtype, ...]] = {"cce": (torch.float16, torch.bfloat16),
                                                     "liger": (torch.float16, torch.bfloat16, torch.float32)}
# CCE skips softmax entries below this in its backward (its default "high": dtype eps / 32). None: no
# filtering, the gradient of the naive path; the GPU benchmark says what filtering would gain.
CCE_FILTER_EPS: float | str | None = None
GPU_EXTRA_HINT = "pip install -e '.[gpu]'"


def kernel_installed(path: str) -> bool:
    """Whether the package of kernel ``path`` (``cce`` or ``liger``) can be imported (it is not imported)."""
    return importlib.util.find_spec(KERNELS[path][0]) is not None


def check_loss_path(path: str, where: str = "optim.loss_path") -> str:
    """The canonical name of ``path`` (aliases resolved); a forced kernel must be installed.

    Raises:
        ConfigError: naming the value, why it cannot be used and what is valid.
    """
    name = ALIASES.get(path, path)
    if name not in LOSS_PATHS:
        raise ConfigError(f"{where}={path!r} is not valid; valid: {', '.join(LOSS_PATHS)} "
                          f"(and {', '.join(repr(a) for a in ALIASES)} for {', '.join(ALIASES.values())})")
    if name in KERNELS and not kernel_installed(name):
        module, dist = KERNELS[name]
        raise ConfigError(f"{where}={path!r} needs the {dist} package (module {module}), which is not installed; "
                          f"valid: install the GPU extra ({GPU_EXTRA_HINT}) and run on CUDA, or "
                          f"{where}=chunked / auto (auto uses a kernel only where one can run)")
    return name


def resolve_loss_path(path: str, device: torch.device, dtype: torch.dtype | None = None,
                      where: str = "optim.loss_path") -> str:
    """The path that runs on ``device`` for hidden states of ``dtype``: ``chunked``, ``naive``, ``cce`` or ``liger``.

    ``auto`` takes the first installed kernel of ``AUTO_KERNELS`` that takes ``dtype`` (any, when None) on
    CUDA, else ``chunked``.

    Raises:
        ConfigError: a forced kernel off CUDA, not installed, or given a dtype it does not take.
    """
    name = check_loss_path(path, where)
    if name == "auto":
        if device.type != "cuda":
            return "chunked"
        usable = (k for k in AUTO_KERNELS if (dtype is None or dtype in KERNEL_DTYPES[k]) and kernel_installed(k))
        return next(usable, "chunked")
    if name in KERNELS and device.type != "cuda":
        raise ConfigError(f"{where}={path!r} runs only on CUDA (a Triton kernel), and this run's device is "
                          f"{device.type!r}; valid here: {where}=chunked, naive or auto (auto: chunked off CUDA), "
                          "or run on a GPU (scaling.use_gpu=true)")
    if name in KERNELS and dtype is not None and dtype not in KERNEL_DTYPES[name]:
        valid = ", ".join(str(d).removeprefix("torch.") for d in KERNEL_DTYPES[name])
        raise ConfigError(f"{where}={path!r} takes hidden states of dtype {valid}, got "
                          f"{str(dtype).removeprefix('torch.')}; valid: model.torch_dtype among those, or {where}="
                          f"{'liger' if name == 'cce' else 'chunked'} / auto")
    return name


class _ChunkedTokenCE(torch.autograd.Function):
    """Per-token CE through the chunked head; backward takes the per-token upstream gradient."""

    @staticmethod
    def forward(ctx, rows, weight, targets, chunk_elements):  # noqa: D102
        ce, lse = chunked_ce(rows.detach(), weight.detach(), targets, chunk_elements)
        ctx.save_for_backward(rows, weight, targets, lse)
        ctx.chunk_elements = chunk_elements
        return ce

    @staticmethod
    def backward(ctx, grad_ce):  # noqa: D102
        rows, weight, targets, lse = ctx.saved_tensors
        grad_rows, grad_weight = chunked_grads(rows.detach(), weight.detach(), targets, lse, grad_ce.to(lse.dtype),
                                               ctx.chunk_elements, ctx.needs_input_grad[1])
        return (grad_rows.to(rows.dtype) if ctx.needs_input_grad[0] else None), grad_weight, None, None


def _cce_token_ce(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # UNTESTED here (no CUDA): cut_cross_entropy.linear_cross_entropy(e (N, D), c (V, D), targets (N,)),
    # reduction="none" gives (N,) fp32; its backward scales each row by the upstream gradient.
    from cut_cross_entropy import linear_cross_entropy

    return linear_cross_entropy(rows, weight, targets, reduction="none", filter_eps=CCE_FILTER_EPS)


def _liger_token_ce(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    # UNTESTED here (no CUDA): LigerFusedLinearCrossEntropyLoss(reduction="none")(lin_weight (V, H), input (N, H),
    # target (N,)) gives (N,) fp32. Before 0.8.2 (PR #1298) its weight gradient ignored a per-token upstream
    # gradient; the extra requires >= 0.8.2. fp32 accumulation of the head gradient over token chunks.
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    return LigerFusedLinearCrossEntropyLoss(reduction="none", accum_dtype=torch.float32)(weight, rows, targets)


def head_token_ce(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, path: str, *,
                  chunk_elements: int | None = None) -> torch.Tensor:
    """Per-token CE of ``rows @ weight.T`` against ``targets`` through the LM-head path ``path``.

    Differentiable w.r.t. ``rows`` and ``weight`` with any per-token upstream gradient, so it serves
    ``sum(w * ce)`` with ``w`` detached (computed from ``ce.detach()``) and every other loss of the family.

    Args:
        rows: (N, H) hidden states of the positions that carry a loss.
        weight: (V, H) LM-head weight.
        targets: (N,) target ids in [0, V).
        path: a resolved path: ``chunked``, ``naive``, ``cce`` or ``liger`` (``resolve_loss_path``).
        chunk_elements: logits per vocabulary chunk of the chunked path (None: its device default).

    Returns:
        ce (N,) in fp32 (fp64 for fp64 inputs on the chunked and naive paths).
    """
    if path == "chunked":
        return _ChunkedTokenCE.apply(rows, weight, targets, chunk_elements)
    if path == "naive":
        logits = rows @ weight.T
        return F.cross_entropy(logits.to(torch.promote_types(logits.dtype, torch.float32)), targets, reduction="none")
    if path == "cce":
        return _cce_token_ce(rows, weight, targets)
    if path == "liger":
        return _liger_token_ce(rows, weight, targets)
    raise ConfigError(f"LM-head path {path!r} is not a resolved one; valid: chunked, naive, cce, liger "
                      "(resolve 'auto' with resolve_loss_path)")


def head_lm_term(hidden: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor, term: TermFn,
                 path: str) -> LossOutput:
    """``term(ce (B, T-1), mask (B, T-1))`` on the CE of ``hidden @ head_weight.T`` through ``path``.

    ``chunked`` is ``fused_lm_term`` itself (gradients computed in the forward pass, backward only scales
    them), so that path is the one it always was. A kernel path gathers the rows that carry a loss and lets
    autograd send ``term``'s per-token gradient into the kernel's backward.

    Args:
        hidden: (B, T, H) last hidden states; head_weight: (V, H); labels: (B, T), -100 ignored (shift inside).
        path: ``chunked``, ``cce``, ``liger``, or ``naive`` (full logits of the loss rows; the module's naive
            path takes the model's own logits instead, bias and soft-capping included).
    """
    check_head_shapes(hidden, head_weight, labels)
    target, mask = shift_labels(labels)
    if path == "chunked" or not bool(mask.any()):  # no row for a kernel: the chunked path's zero gradient
        return fused_lm_term(hidden, head_weight, labels, term)
    ce_rows = head_token_ce(hidden[:, :-1][mask], head_weight, target[mask], path)
    ce = torch.zeros(mask.shape, dtype=ce_rows.dtype, device=ce_rows.device).masked_scatter(mask, ce_rows)
    return term(ce, mask)


@torch.no_grad()
def head_ce(hidden: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor, path: str) -> torch.Tensor:
    """Per-token CE (B, T-1), 0 where ignored, without a graph (a reference model, a batch weight)."""
    check_head_shapes(hidden, head_weight, labels)
    target, mask = shift_labels(labels)
    rows, t = hidden[:, :-1][mask], target[mask]
    if path == "chunked" or rows.shape[0] == 0:
        ce_rows, _ = chunked_ce(rows, head_weight.detach(), t)
    else:
        ce_rows = head_token_ce(rows, head_weight.detach(), t, path)
    return torch.zeros(mask.shape, dtype=ce_rows.dtype, device=ce_rows.device).masked_scatter(mask, ce_rows)
