"""The loop's loss normalisation: micro-batches and workers give the global-batch gradient; masks shifted.

A tiny causal LM on CPU (one attention block, written here: no transformers import in the spawned
workers). Two workers are two spawned processes with a gloo group; their
gradients are averaged before each step as DDP does (the loop scales its losses for exactly that).
"""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from tests.spawn import run_spawned
from unlearn.data.formatting import IGNORE_INDEX, EncodedQA, collate
from unlearn.losses import build_method, shift_labels
from unlearn.train.config import OptimConfig
from unlearn.train.loop import Dist, UnlearnData, _micro_step, train_epoch
from unlearn.train.module import CausalLMWithLoss

VOCAB = 32

# Methods whose units are sequences (instance / batch granularity), positions (KL) or sums.
VARIANTS = {
    "instance-ga": {"weighting": "simsat", "beta": 0.05, "granularity": "instance", "objective": "ga"},
    "batch-gd": {"weighting": "simsat", "beta": 0.05, "granularity": "batch", "objective": "gd"},
    "token-npo+kl": {"weighting": "uniform", "objective": "npo", "retain": "kl", "alpha": 0.5},
    "sum-gd": {"weighting": "uniform", "objective": "gd", "reduction": "sum"},
}
LR = {"token-npo+kl": 0.05, "sum-gd": 0.02}  # SGD steps of similar size (a sum is ~ 10-40 times a mean here)


class Backbone(nn.Module):
    """Embeddings + one causal self-attention block + MLP; right padding never reaches earlier positions."""

    def __init__(self, hidden: int = 16, max_len: int = 64) -> None:
        super().__init__()
        self.embed, self.pos = nn.Embedding(VOCAB, hidden), nn.Embedding(max_len, hidden)
        self.qkv, self.mlp = nn.Linear(hidden, 3 * hidden), nn.Sequential(nn.Linear(hidden, 32), nn.GELU(),
                                                                          nn.Linear(32, hidden))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        x = self.embed(input_ids) + self.pos(torch.arange(input_ids.shape[1]))
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = x + F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return SimpleNamespace(last_hidden_state=x + self.mlp(x))


class TinyCausalLM(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.model, self.lm_head = Backbone(), nn.Linear(16, VOCAB, bias=False)

    def get_output_embeddings(self) -> nn.Module:
        return self.lm_head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=self.lm_head(self.model(input_ids, attention_mask).last_hidden_state))


def tiny_lm() -> CausalLMWithLoss:
    torch.manual_seed(0)
    return CausalLMWithLoss(TinyCausalLM())


def make_data(n: int = 6, seed: int = 0) -> UnlearnData:
    """Examples with prompts and answers of different lengths, and key-token masks aligned with the labels."""
    g = torch.Generator().manual_seed(seed)

    def example(i: int) -> EncodedQA:
        p, a = 2 + i % 3, 2 + (5 * i) % 7
        ids = torch.randint(1, VOCAB, (p + a,), generator=g).tolist()
        imp = [False] * p + (torch.rand(a, generator=g) < 0.5).tolist()
        return EncodedQA(tuple(ids), tuple([IGNORE_INDEX] * p + ids[p:]), p, tuple(imp))

    return UnlearnData(tuple(example(i) for i in range(n)), tuple(example(i + n) for i in range(n)), 0)


class AveragedGrads:
    """An optimizer whose step first averages the gradients over the workers, as DDP's backward does."""

    def __init__(self, opt, world_size: int) -> None:
        self.opt, self.world_size = opt, world_size

    def step(self) -> None:
        for group in self.opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    tdist.all_reduce(p.grad)
                    p.grad /= self.world_size
        self.opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.opt.zero_grad(set_to_none=set_to_none)


def run(variant: str, *, rank: int = 0, world_size: int = 1, micro: int | None = None,
        loss_path: str = "auto") -> dict[str, torch.Tensor]:
    """One epoch (a batch of 4, then of 2) of one variant from the same initial model; the trained weights."""
    method = build_method(**VARIANTS[variant])
    data = make_data()
    policy = tiny_lm()
    ref = copy.deepcopy(policy).requires_grad_(False).eval() if method.needs_reference else None
    optim = OptimConfig(lr=LR.get(variant, 0.5), batch_size=4, micro_batch_size=micro, grad_clip=None, loss_path=loss_path)
    # Plain SGD: the update is the gradient itself (Adam would hide a wrong scale of it)
    opt = torch.optim.SGD(policy.parameters(), lr=optim.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    optimizer = AveragedGrads(opt, world_size) if world_size > 1 else opt
    train_epoch(policy, ref, method, data, optimizer, sched, optim, seed=0, epoch=0, dist=Dist(rank, world_size))
    return {k: v.detach().clone() for k, v in policy.state_dict().items()}


def _worker(rank: int, world_size: int, init_file: str, out_file: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        results = {v: run(v, rank=rank, world_size=world_size) for v in VARIANTS}
        if rank == 0:
            torch.save(results, out_file)
    finally:
        tdist.destroy_process_group()


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> None:
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 2e-6, f"{what}: weights differ by {worst}"


def moved(a: dict[str, torch.Tensor]) -> float:
    init = tiny_lm().state_dict()
    return max(float((a[k] - init[k]).abs().max()) for k in a)


@pytest.fixture(scope="module")
def one_worker() -> dict[str, dict[str, torch.Tensor]]:
    return {v: run(v) for v in VARIANTS}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_micro_batches_give_the_global_batch_step(one_worker, variant):
    """Accumulating micro-batches of 1 equals one micro-batch of 4: per-sequence means, the global batch's
    weight (batch granularity), KL over positions and sums all scale exactly."""
    assert moved(one_worker[variant]) > 1e-3
    assert_same_weights(one_worker[variant], run(variant, micro=1), f"{variant}, micro-batches of 1")


def test_two_workers_equal_one(one_worker, tmp_path):
    """1 vs 2 workers, the loop's "sequence" unit (instance / batch granularity) among them."""
    out = tmp_path / "rank0.pt"
    assert run_spawned(_worker, 2, 2, str(tmp_path / "pg"), str(out)) == [0, 0]
    two = torch.load(out)
    for variant in VARIANTS:
        assert_same_weights(one_worker[variant], two[variant], f"{variant}, 2 workers")


def test_naive_path_agrees_for_sequence_units(one_worker):
    assert_same_weights(one_worker["batch-gd"], run("batch-gd", loss_path="naive"), "batch-gd, naive path")


@pytest.mark.parametrize("variant", ["batch-gd", "token-npo+kl"])
def test_auto_on_cpu_is_the_chunked_head_of_before_to_the_bit(one_worker, variant):
    """auto (the default) on CPU, chunked and its old name fused train the very same weights."""
    for path in ("chunked", "fused"):
        trained = run(variant, loss_path=path)
        assert all(torch.equal(trained[k], one_worker[variant][k]) for k in trained), f"{variant}, {path}"


def test_forced_kernel_on_cpu_stops_before_any_step(monkeypatch):
    from unlearn.errors import ConfigError
    from unlearn.losses import head

    monkeypatch.setattr(head, "kernel_installed", lambda path: True)  # the extra installed: the config loads
    optim = OptimConfig(batch_size=4, loss_path="cce")
    policy = tiny_lm()
    before = copy.deepcopy(policy.state_dict())
    opt = torch.optim.SGD(policy.parameters(), lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    with pytest.raises(ConfigError, match=r"optim.loss_path='cce' runs only on CUDA .* device is 'cpu'"):
        train_epoch(policy, None, build_method("satimp"), make_data(), opt, sched, optim, seed=0, epoch=0)
    assert all(torch.equal(v, before[k]) for k, v in policy.state_dict().items())


def test_micro_step_shifts_the_importance_mask():
    """The batch's importance (B, T) is aligned with its labels; the loss takes it shifted like them."""
    data = make_data()
    policy = tiny_lm()
    method = build_method("uniform", importance=True, s=1.0)
    fi = [0, 1, 2]
    loss, _ = _micro_step(policy, None, method, data, fi, fi, denom_f=sum(_n(data.forget[i]) for i in fi),
                          denom_r=1, loss_path="chunked", gen=torch.Generator().manual_seed(0), dist=Dist())
    fb = collate([data.forget[i] for i in fi], data.pad_id)
    with torch.no_grad():
        ce = policy(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="ce")
    _, mask = shift_labels(fb["labels"])
    key = fb["importance"][:, 1:] & mask
    assert key.any() and not torch.equal(key, fb["importance"][:, :-1] & mask)
    assert float(loss.detach()) == pytest.approx(float(-(ce * key).sum() / mask.sum()), rel=1e-6)


def _n(e: EncodedQA) -> int:
    return sum(1 for x in e.labels[1:] if x != IGNORE_INDEX)


def test_sum_reduction_is_not_divided():
    data = make_data()
    policy = tiny_lm()
    method = build_method("uniform", reduction="sum")
    fi = [0, 1]
    loss, _ = _micro_step(policy, None, method, data, fi, fi, denom_f=1000, denom_r=1000, loss_path="chunked",
                          gen=torch.Generator().manual_seed(0), dist=Dist())
    fb = collate([data.forget[i] for i in fi], data.pad_id)
    with torch.no_grad():
        ce = policy(fb["input_ids"], fb["attention_mask"], fb["labels"], mode="ce")
    assert float(loss.detach()) == pytest.approx(-float(ce.sum()), rel=1e-6)
    assert not math.isnan(float(loss))


def test_an_epoch_whose_last_step_leaves_non_finite_weights_diverged():
    """Its loss was finite (computed before the update), the weights it left are not (an update that
    overflowed, as lr=1e9 does on the tiny model): DivergedError with the learning rate, as a non-finite loss
    gives, not an evaluation's complaint about non-finite scores."""
    from unlearn.train.loop import DivergedError

    class Overflowing(torch.optim.SGD):
        def step(self, closure=None):
            super().step(closure)
            with torch.no_grad():
                self.param_groups[0]["params"][0].view(-1)[0] = math.inf

    method = build_method(**VARIANTS["batch-gd"])
    optim = OptimConfig(lr=1e9, batch_size=6, grad_clip=None)  # one step over the 6 forget examples
    for opt_type, diverges in ((Overflowing, True), (torch.optim.SGD, False)):
        policy = tiny_lm()
        opt = opt_type(policy.parameters(), lr=0.5)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
        if diverges:
            with pytest.raises(DivergedError, match=r"loss is -?[0-9.]+ \(mean\) at epoch 1, but its 1 step\(s\) left "
                                                    r"weights that are not finite \(optim.lr=1000000000.0\)"):
                train_epoch(policy, None, method, make_data(), opt, sched, optim, seed=0, epoch=0)
        else:  # the same step without the overflow passes
            assert math.isfinite(train_epoch(policy, None, method, make_data(), opt, sched, optim, seed=0, epoch=0)["loss"])
