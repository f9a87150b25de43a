"""RMU in the loop on a real tiny Llama: the hooked layer output, only the trainable pattern moves, the
activations are steered, micro-batches give the global-batch step, and FSDP2 on two gloo workers gives
the single-process step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as tdist

from tests.spawn import run_spawned
from tests.chunks import corpus_chunks
from unlearn.errors import ConfigError
from unlearn.losses import build_method
from unlearn.losses.rmu import activation_mse
from unlearn.train.config import OptimConfig, load_run_config
from unlearn.train.loop import Dist, UnlearnData, make_optimizer, train_epoch
from unlearn.train.module import CausalLMWithLoss, restrict_trainable

VOCAB = 64
PATTERN = r"model\.layers\.(1|2)\.mlp\.down_proj\.weight"
RMU = {"name": "uniform", "objective": "rmu", "layer": 2, "trainable": PATTERN, "steering_coeff": 8.0, "alpha": 10.0}


def tiny_llama():
    from unlearn.models import build_tiny
    from unlearn.models.load import ModelConfig

    return build_tiny(ModelConfig(name="tiny"), VOCAB, seed=0, pad_id=0, bos_id=1, eos_id=2)


DATA = UnlearnData(corpus_chunks(8, 0, VOCAB), corpus_chunks(8, 1, VOCAB), 0)


def train(lm, *, epochs: int = 1, micro: int | None = None, lr: float = 1e-2, dist: Dist = Dist(),
          wrap=None) -> CausalLMWithLoss:
    method = build_method(**RMU)
    restrict_trainable(lm, method.trainable, method.layer)
    ref_lm = copy.deepcopy(lm)
    policy, ref = CausalLMWithLoss(lm), CausalLMWithLoss(ref_lm).requires_grad_(False).eval()
    if wrap is not None:
        policy, ref = wrap(policy, trainable=True), wrap(ref, trainable=False)
    optim = OptimConfig(lr=lr, batch_size=4, micro_batch_size=micro)
    opt, sched = make_optimizer(policy, optim, total_steps=10**6)  # ~constant lr
    for epoch in range(epochs):
        train_epoch(policy, ref, method, DATA, opt, sched, optim, seed=5, epoch=epoch, dist=dist)
    return policy


def forget_drift(policy: CausalLMWithLoss, examples, target) -> float:
    from unlearn.data.formatting import collate

    b = collate(list(examples), 0)
    with torch.no_grad():
        h = policy(b["input_ids"], b["attention_mask"], b["labels"], mode="acts", layer=2)
    mask = b["attention_mask"].bool()
    return float((activation_mse(h, target if target.dim() == 1 else target) * mask).sum() / mask.sum())


def test_acts_mode_is_the_layers_output():
    lm = tiny_llama().eval()
    ids = torch.randint(3, VOCAB, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    hidden = lm(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    module = CausalLMWithLoss(lm)
    for layer in (0, 1, 2):  # hidden_states[layer + 1] is layer's output below the last (normed) one
        torch.testing.assert_close(module(ids, mask, ids, mode="acts", layer=layer), hidden[layer + 1])


def test_only_the_pattern_trains_and_the_forget_activations_are_steered():
    lm = tiny_llama()
    before = {k: v.clone() for k, v in lm.state_dict().items()}
    method = build_method(**RMU)
    control = method.control_vector(lm.config.hidden_size, seed=5)
    start = forget_drift(CausalLMWithLoss(copy.deepcopy(lm)), DATA.forget, control)
    policy = train(lm, epochs=4)
    changed = {k for k, v in policy.lm.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"model.layers.1.mlp.down_proj.weight", "model.layers.2.mlp.down_proj.weight"}
    # forget activations moved towards the control vector by far more than the retain ones left the frozen
    # model's (the frozen model's retain activations: the untouched copy's)
    frozen = CausalLMWithLoss(tiny_llama())
    from unlearn.data.formatting import collate

    b = collate(list(DATA.retain), 0)
    with torch.no_grad():
        ref_h = frozen(b["input_ids"], b["attention_mask"], b["labels"], mode="acts", layer=2)
        h = policy(b["input_ids"], b["attention_mask"], b["labels"], mode="acts", layer=2)
    mask = b["attention_mask"].bool()
    retain_mse = float((activation_mse(h, ref_h) * mask).sum() / mask.sum())
    end = forget_drift(policy, DATA.forget, control)
    assert end < 0.5 * start
    assert retain_mse < 0.1 * (start - end)


def test_micro_batches_give_the_global_batch_step():
    a = train(tiny_llama(), lr=1e-3).lm.state_dict()
    b = train(tiny_llama(), lr=1e-3, micro=1).lm.state_dict()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5  # float32 sums in another order (1.2e-6 seen)


def test_layer_and_pattern_are_checked_against_the_model():
    with pytest.raises(ConfigError, match=r"method.layer=4 is out of range for this model's 4 decoder layers; valid: 0 to 3"):
        restrict_trainable(tiny_llama(), PATTERN, 4)
    with pytest.raises(ConfigError, match=r"matches none of the model's"):
        restrict_trainable(tiny_llama(), r"model\.layers\.9\.mlp\.down_proj\.weight", 2)
    # a preset's layer count is known when the config loads
    with pytest.raises(ConfigError, match=r"method.layer=7 is out of range for model 'tiny' \(4 decoder layers\)"):
        load_run_config(None, ["method={weighting: uniform, objective: rmu}"])


def _fsdp_worker(rank: int, init_file: str, out_file: str) -> None:
    from unlearn.train.strategy import FSDPStrategy

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        strategy = FSDPStrategy(torch.device("cpu"), 2)
        policy = train(tiny_llama(), epochs=2, dist=Dist(rank, 2), wrap=strategy.wrap)
        state = strategy.full_state_dict(policy)
        if rank == 0:
            torch.save({k.removeprefix("lm."): v for k, v in state.items()}, out_file)
    finally:
        tdist.destroy_process_group()


def test_fsdp_two_workers_equal_one(tmp_path):
    one = train(tiny_llama(), epochs=2).lm.state_dict()
    out = tmp_path / "rank0.pt"
    assert run_spawned(_fsdp_worker, 2, str(tmp_path / "pg"), str(out)) == [0, 0]
    two = torch.load(out)
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
    assert not torch.equal(one["model.layers.2.mlp.down_proj.weight"], tiny_llama().state_dict()["model.layers.2.mlp.down_proj.weight"])
