"""LoRA through peft: settings checked before any compute, only the adapters train, the adapters-off
reference is the base model exactly, and the export (merged model + adapter) loads back with plain
transformers / peft and reproduces the trained model."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.chunks import corpus_chunks
from unlearn.errors import ConfigError
from unlearn.losses import build_method
from unlearn.models import build_tiny
from unlearn.models.load import ModelConfig
from unlearn.models.lora import LoraConfig, apply_lora, base_state_key, check_lora_model, save_lora_export
from unlearn.train.config import OptimConfig, load_run_config
from unlearn.train.loop import UnlearnData, make_optimizer, train_epoch
from unlearn.train.module import AdaptersOff, CausalLMWithLoss

VOCAB = 64


def tiny_llama():
    return build_tiny(ModelConfig(name="tiny-2l"), VOCAB, seed=0, pad_id=0, bos_id=1, eos_id=2)


DATA = UnlearnData(corpus_chunks(8, 0, VOCAB), corpus_chunks(8, 1, VOCAB), 0)
NPO_KL = {"name": "uniform", "objective": "npo", "retain": "kl", "alpha": 1.0}
IDS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 0], [1, 7, 11, 3, 40, 50, 0, 0]])
MASK = (IDS != 0).long().index_fill_(1, torch.tensor([0]), 1)


def train_lora(lm, *, epochs: int = 2, lr: float = 3e-2, dist=None, wrap=None, method=NPO_KL):
    """NPO + KL on ``DATA`` with LoRA adapters; the reference is the policy with its adapters off."""
    from unlearn.train.loop import Dist

    policy = CausalLMWithLoss(apply_lora(lm, LoraConfig(r=4), seed=0))
    if wrap is not None:
        policy = wrap(policy, trainable=True)
    ref = AdaptersOff(getattr(policy, "module", policy))
    optim = OptimConfig(lr=lr, batch_size=4)
    opt, sched = make_optimizer(policy, optim, total_steps=10**6)  # ~constant lr
    for epoch in range(epochs):
        train_epoch(policy, ref, build_method(**method), DATA, opt, sched, optim, seed=3, epoch=epoch,
                    dist=dist or Dist())
    return policy


@pytest.fixture(scope="module")
def trained():
    base = tiny_llama()
    policy = train_lora(tiny_llama())
    return base, policy


@pytest.mark.parametrize("override, match", [
    ("model.lora={r: 0}", r"^model.lora: model.lora.r=0 is out of range; valid: \[1, inf\)$"),
    ("model.lora={alpha: 0}", r"model.lora.alpha=0.0 is out of range; valid: \(0.0, inf\)$"),
    ("model.lora={dropout: 1.0}", r"model.lora.dropout=1.0 is out of range; valid: \[0.0, 1.0\)$"),
    ("model.lora={target_modules: []}", r"model.lora.target_modules=\[\] is empty.*valid: linear layer names"),
    ("model.lora={target_modules: [q_proj, lm_head]}", r"model.lora.target_modules names \['lm_head'\].*valid"),
    ("model.lora={rank: 4}", r"rank.*valid.*alpha"),
])
def test_bad_settings_are_one_line_errors_at_load(override, match):
    with pytest.raises(ConfigError, match=match) as e:
        load_run_config(None, [override])
    assert "\n" not in str(e.value)


def test_rmu_trainable_with_lora_is_refused_not_ignored():
    """With LoRA only the adapters train: RMU's full-weight selection, given explicitly, would be ignored."""
    rmu = "method={weighting: uniform, objective: rmu, layer: 1, trainable: 'model.layers.1.mlp.down_proj.weight'}"
    with pytest.raises(ConfigError, match=r"^method.trainable='model.layers.1.mlp.down_proj.weight' picks the full "
                                          r"weights RMU trains.*valid: drop method.trainable") as e:
        load_run_config(None, ["model.lora={r: 4}", rmu])
    assert "\n" not in str(e.value)
    without = load_run_config(None, ["model.lora={r: 4}", rmu.replace(", trainable: 'model.layers.1.mlp.down_proj.weight'", "")])
    assert without.method.trainable is None and without.model.lora.r == 4  # the adapters choose what trains


def test_a_target_that_matches_nothing_names_what_would_work():
    with pytest.raises(ConfigError, match=r"^model.lora.target_modules entry 'qkv_proj' matches no module of the "
                                          r"model; valid: linear layer names of this model: \['down_proj', "
                                          r"'gate_proj', 'k_proj', 'o_proj', 'q_proj', 'up_proj', 'v_proj'\]$"):
        check_lora_model(LoraConfig(target_modules=("q_proj", "qkv_proj")), "tiny-2l")
    with pytest.raises(ConfigError, match=r"entry 'mlp' matches 'model.layers.0.mlp', which is not nn.Linear"):
        check_lora_model(LoraConfig(target_modules=("mlp",)), "tiny-2l")
    check_lora_model(LoraConfig(target_modules=("q_proj", "layers.1.mlp.down_proj")), "tiny-2l")


def test_a_target_that_matches_nothing_fails_before_preparing(tmp_path):
    from unlearn.train.prepare import prepare

    cfg = load_run_config(None, [f"cache_dir={tmp_path}", "model.name=tiny-2l", "model.lora={target_modules: [wq]}"])
    with pytest.raises(ConfigError, match=r"entry 'wq' matches no module"):
        prepare(cfg, log=lambda s: None)
    assert not (tmp_path / "prepared").exists()  # nothing was prepared, not even a lock


def test_lora_leaves_the_prepare_key_alone():
    from unlearn.train.prepare import prepare_key

    assert prepare_key(load_run_config(None, ["model.lora={r: 2}"])) == prepare_key(load_run_config(None, []))


def test_only_the_adapters_train_and_the_base_weights_stay_bit_identical(trained):
    base, policy = trained
    target = base.state_dict()
    state = policy.lm.state_dict()
    trainable = {n for n, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    kept = {b: v for k, v in state.items() if (b := base_state_key(k)) is not None}
    assert sorted(kept) == sorted(target)
    assert all(torch.equal(kept[k], target[k]) for k in target)
    assert max(float(v.abs().max()) for k, v in state.items() if ".lora_B." in k) > 0  # the adapters moved


def test_the_adapters_off_reference_is_the_base_model_exactly(trained):
    base, policy = trained
    ref = AdaptersOff(policy)
    labels = IDS.masked_fill(MASK == 0, -100)
    with torch.no_grad():
        got = ref(IDS, MASK, labels, mode="logits")
        want = base(input_ids=IDS, attention_mask=MASK).logits
        adapted = policy(IDS, MASK, labels, mode="logits")
        assert torch.equal(got, want)
        assert torch.equal(ref(IDS, MASK, labels, mode="ce"), CausalLMWithLoss(base)(IDS, MASK, labels, mode="ce"))
    assert float((adapted - want).abs().max()) > 1e-3  # the adapters are back on afterwards, and matter
    assert all(p.requires_grad for n, p in policy.named_parameters() if "lora_" in n)


def test_the_export_loads_back_with_plain_transformers_and_peft(trained, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    base, policy = trained
    with torch.no_grad():
        adapted = policy.lm(input_ids=IDS, attention_mask=MASK).logits
    tok = PreTrainedTokenizerFast(tokenizer_object=_tokenizer_object(), pad_token="<pad>")
    export = copy.deepcopy(policy.lm)
    save_lora_export(export, tok, tmp_path / "model", tmp_path / "adapter")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert type(merged).__name__ == "LlamaForCausalLM" and not any("lora" in k for k in merged.state_dict())
    reloaded = PeftModel.from_pretrained(copy.deepcopy(base), tmp_path / "adapter")
    with torch.no_grad():
        assert torch.equal(merged(input_ids=IDS, attention_mask=MASK).logits,
                           export(input_ids=IDS, attention_mask=MASK).logits)  # the merged model, to the bit
        assert torch.equal(reloaded(input_ids=IDS, attention_mask=MASK).logits, adapted)
        # merging reassociates (W + s BA) x: equal to float rounding, not bit for bit
        assert float((merged(input_ids=IDS, attention_mask=MASK).logits - adapted).abs().max()) < 1e-4


def _tokenizer_object():
    from tokenizers import Tokenizer, models

    return Tokenizer(models.WordLevel({"<pad>": 0, "<unk>": 1}, unk_token="<unk>"))


def _worker(rank: int, init_file: str, out_file: str) -> None:
    """FSDP2 then DDP on the same two gloo workers (one spawn: a worker's start-up is most of the cost)."""
    import torch.distributed as tdist

    from unlearn.train.loop import Dist
    from unlearn.train.strategy import make_strategy

    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        states = {}
        for name in ("fsdp", "ddp"):
            strategy = make_strategy(name, torch.device("cpu"), 2)
            policy = train_lora(tiny_llama(), dist=Dist(rank, 2), wrap=strategy.wrap)
            states[name] = {k.removeprefix("lm."): v for k, v in strategy.full_state_dict(policy).items()}
        if rank == 0:
            torch.save(states, out_file)
    finally:
        tdist.destroy_process_group()


def test_two_workers_follow_the_one_worker_trajectory(trained, tmp_path):
    """NPO + KL with the adapters-off reference on two gloo workers, under FSDP2 (the adapters sharded with
    the base weights; switched off and on between sharded forwards) and DDP: the one-worker weights, to a
    small fraction of how far the adapters moved (Adam amplifies reduction-order rounding: no bit equality).
    The same through Ray Train's worker group, the merged export and the adapter included, under FSDP2 (the
    strategy whose wrapping differs from one worker's): tests/sweeps/test_ray_run.py; Ray Train starts the
    same worker group for either strategy, so DDP is checked here, at a tenth of a Ray Train run's cost."""
    from tests.spawn import run_spawned

    _, policy = trained
    one = policy.lm.state_dict()
    init = CausalLMWithLoss(apply_lora(tiny_llama(), LoraConfig(r=4), seed=0)).lm.state_dict()
    moved = max(float((one[k] - init[k]).abs().max()) for k in one)
    out = tmp_path / "rank0.pt"
    assert run_spawned(_worker, 2, str(tmp_path / "pg"), str(out)) == [0, 0]
    for name, two in torch.load(out).items():
        assert sorted(two) == sorted(one), name
        assert all(torch.equal(one[k], two[k]) for k in one if "lora_" not in k), name  # the base stays as it was
        assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-2 * moved, name
