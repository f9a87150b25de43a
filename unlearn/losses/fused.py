"""Memory-lean fused LM head + weighted CE.

The naive path materialises (B*T, V) logits, copies them for the shift, upcasts them and takes CE on
every position. Here only the valid (shifted, non-ignored) rows are projected, vocabulary chunk by
vocabulary chunk, so at most ``N x chunk`` logits exist at once:

1. pass A: per-token CE with an online log-sum-exp in fp32 over vocab chunks;
2. the loss is computed by the same pure tensor function as the naive path, on the (B, T) CE
   tensor, and autograd on that small tensor gives each token's coefficient dL/dCE (this covers every
   weighting, granularity, sampling and objective: weights are detached, so only CE carries gradient);
3. pass B: the gradients w.r.t. the hidden states and the head weight, chunk by chunk, in the forward
   pass; backward only scales them by the incoming scalar.

Pure PyTorch, CPU and GPU. GEMMs run in the inputs' dtype, log-sum-exp and softmax in fp32. This is
``optim.loss_path: chunked`` (``unlearn.losses.head`` dispatches between it and the CUDA kernels).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from unlearn.errors import ConfigError
from unlearn.losses.ce import shift_labels
from unlearn.losses.method import LossOutput, MethodConfig, Method

DEFAULT_CHUNK_ELEMENTS = 1 << 22  # 4 M fp32 logits (16 MiB) per chunk: still large GEMMs (e.g. 1k rows x 4k vocab)
CUDA_CHUNK_ELEMENTS = 1 << 24  # 16 M (64 MiB) on a GPU: fewer, larger GEMMs and kernel launches (BENCHMARKS.md, GPU)


def default_chunk_elements(device: torch.device) -> int:
    """Logits per vocabulary chunk when the caller names none: larger on a GPU, where launches cost more."""
    return CUDA_CHUNK_ELEMENTS if device.type == "cuda" else DEFAULT_CHUNK_ELEMENTS

TermFn = Callable[[torch.Tensor, torch.Tensor], LossOutput]


def _vocab_chunk(n_rows: int, vocab: int, chunk_elements: int) -> int:
    step = max(1, min(vocab, chunk_elements // max(1, n_rows)))
    # A multiple of 128 columns keeps the chunk GEMMs on aligned tensor-core kernels (an odd width such as
    # 4097 made them 3x slower on an H200).
    return step if step < 128 or step == vocab else step - step % 128


@torch.no_grad()
def chunked_ce(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor,
               chunk_elements: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row CE and log-sum-exp of ``rows @ weight.T`` without materialising all logits.

    Args:
        rows: (N, H) hidden states of the valid positions.
        weight: (V, H) LM-head weight.
        targets: (N,) target ids.
        chunk_elements: logits per vocabulary chunk; None: ``default_chunk_elements`` of the device.

    Returns:
        ce (N,) fp32 and lse (N,) fp32.
    """
    n, vocab = rows.shape[0], weight.shape[0]
    step = _vocab_chunk(n, vocab, chunk_elements or default_chunk_elements(rows.device))
    acc = torch.promote_types(rows.dtype, torch.float32)
    run_max = torch.full((n,), -torch.inf, dtype=acc, device=rows.device)
    run_sum = torch.zeros(n, dtype=acc, device=rows.device)
    target_logit = torch.zeros(n, dtype=acc, device=rows.device)
    for start in range(0, vocab, step):
        logits = (rows @ weight[start:start + step].T).to(acc)  # (N, chunk)
        new_max = torch.maximum(run_max, logits.max(1).values)
        run_sum = run_sum * torch.exp(run_max - new_max) + logits.sub(new_max[:, None]).exp_().sum(1)
        run_max = new_max
        inside = (targets >= start) & (targets < start + step)
        idx = (targets - start).clamp(0, logits.shape[1] - 1)
        target_logit += torch.where(inside, logits.gather(1, idx[:, None]).squeeze(1), 0.0)
    lse = run_max + torch.log(run_sum)
    return lse - target_logit, lse


@torch.no_grad()
def chunked_grads(rows: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, lse: torch.Tensor,
                  coeff: torch.Tensor, chunk_elements: int | None = None,
                  need_weight_grad: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients of sum_i coeff_i * CE_i w.r.t. rows (N, H) and weight (V, H), vocab chunk by chunk."""
    n, vocab = rows.shape[0], weight.shape[0]
    step = _vocab_chunk(n, vocab, chunk_elements or default_chunk_elements(rows.device))
    acc = torch.promote_types(rows.dtype, torch.float32)
    grad_rows = torch.zeros(rows.shape, dtype=acc, device=rows.device)
    grad_weight = torch.empty_like(weight) if need_weight_grad else None
    for start in range(0, vocab, step):
        w_chunk = weight[start:start + step]
        g = (rows @ w_chunk.T).to(acc).sub_(lse[:, None]).exp_()  # softmax (N, chunk), >= fp32
        inside = (targets >= start) & (targets < start + step)
        idx = (targets - start).clamp(0, g.shape[1] - 1)[:, None]
        g.scatter_add_(1, idx, -inside[:, None].to(acc))  # softmax - onehot, without a host sync
        g *= coeff[:, None]
        g = g.to(weight.dtype)
        grad_rows += (g @ w_chunk).to(acc)
        if grad_weight is not None:
            torch.mm(g.T, rows, out=grad_weight[start:start + step])  # rows of a contiguous (V, H): no copy
    return grad_rows, grad_weight


class _AttachGrads(torch.autograd.Function):
    """Returns a precomputed loss; backward scales the precomputed gradients by the incoming scalar.

    The gradients are kept on ``ctx`` (not ``save_for_backward``) and scaled in place: a second (V, H)
    buffer would double the head-gradient memory. A graph scaled by anything but 1 runs backward once.
    """

    @staticmethod
    def forward(ctx, hidden, weight, loss, grad_hidden, grad_weight):  # noqa: D102
        ctx.grads = (grad_hidden, grad_weight)
        ctx.scaled = False
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_out):  # noqa: D102
        grad_hidden, grad_weight = ctx.grads
        if not torch.all(grad_out == 1):
            if ctx.scaled:
                raise RuntimeError("the fused LM-head loss was scaled and can run backward only once")
            ctx.scaled = True
            grad_hidden.mul_(grad_out.to(grad_hidden.dtype))
            grad_weight.mul_(grad_out.to(grad_weight.dtype))
        # Fresh aliases (detach) so that autograd can adopt the buffers as .grad without a copy.
        gh = grad_hidden.detach() if ctx.needs_input_grad[0] else None
        gw = grad_weight.detach() if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None


def check_head_shapes(hidden: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor) -> None:
    """Raise ConfigError naming the three shapes unless hidden is (B, T, H), head weight (V, H), labels (B, T)."""
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2] or head_weight.dim() != 2 \
            or head_weight.shape[1] != hidden.shape[2]:
        raise ConfigError(
            f"hidden shape {tuple(hidden.shape)}, head weight shape {tuple(head_weight.shape)} and labels shape "
            f"{tuple(labels.shape)} do not fit; expected hidden (B, T, H), head weight (V, H), labels (B, T)"
        )


def fused_lm_term(hidden: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor, term: TermFn, *,
                  chunk_elements: int | None = None) -> LossOutput:
    """Apply ``term(ce (B, T-1), mask (B, T-1)) -> LossOutput`` to the CE of ``hidden @ head_weight.T``.

    Args:
        hidden: (B, T, H) last hidden states (before the LM head).
        head_weight: (V, H) LM-head weight.
        labels: (B, T) with -100 at ignored positions; the causal shift happens inside.
        term: a pure function of the per-token CE tensor and mask; CE is 0 where the mask is False.

    Returns:
        LossOutput whose loss is differentiable w.r.t. hidden and head_weight.
    """
    check_head_shapes(hidden, head_weight, labels)
    target, mask = shift_labels(labels)
    h = hidden.detach()[:, :-1][mask]  # (N, H): only the rows that carry a loss
    w = head_weight.detach()
    t = target[mask]
    ce_rows, lse = chunked_ce(h, w, t, chunk_elements)
    ce_rows.requires_grad_(True)
    with torch.enable_grad():
        ce = torch.zeros(mask.shape, dtype=ce_rows.dtype, device=ce_rows.device).masked_scatter(mask, ce_rows)
        out = term(ce, mask)
    needs_grad = torch.is_grad_enabled() and (hidden.requires_grad or head_weight.requires_grad)
    if not needs_grad:
        return LossOutput(out.loss.detach(), out.stats)
    if out.loss.requires_grad:
        (coeff,) = torch.autograd.grad(out.loss, ce_rows, allow_unused=True)
    else:
        coeff = None
    coeff = torch.zeros_like(ce_rows) if coeff is None else coeff.detach()
    grad_rows, grad_w = chunked_grads(h, w, t, lse, coeff, chunk_elements, head_weight.requires_grad)
    grad_hidden = torch.zeros_like(hidden)
    grad_hidden[:, :-1][mask] = grad_rows.to(hidden.dtype)
    if grad_w is None:
        grad_w = torch.zeros((), dtype=head_weight.dtype, device=head_weight.device)
    loss = _AttachGrads.apply(hidden, head_weight, out.loss.detach(), grad_hidden, grad_w)
    return LossOutput(loss, out.stats)


def fused_weighted_lm_loss(hidden: torch.Tensor, head_weight: torch.Tensor, labels: torch.Tensor, *,
                           method: str = "satimp", generator: torch.Generator | None = None,
                           chunk_elements: int | None = None, **params) -> torch.Tensor:
    """The weighted forget term of ``method`` computed through the fused head (never full logits).

    Args:
        hidden: (B, T, H); head_weight: (V, H); labels: (B, T) with -100 ignored.
        method: a weighting name (``satimp``, ``simsat``, ``simimp``, ``wga``, ``uniform``).
        **params: any MethodConfig field (beta1, granularity, sampling, k, ...); objectives that need a
            reference model are not available here (use ``fused_lm_term`` with ``Method.forget_term``).
    """
    from unlearn.config import from_dict

    m = Method(from_dict(MethodConfig, {"weighting": method, **params}, where="method"))
    if m.needs_reference:
        raise ConfigError(f"objective {m.cfg.objective!r} needs a reference model; use fused_lm_term")
    return fused_lm_term(hidden, head_weight, labels, lambda ce, mask: m.forget_term(ce, mask, generator=generator),
                         chunk_elements=chunk_elements).loss
