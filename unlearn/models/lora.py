"""LoRA adapters through peft: what ``model.lora`` configures, checked against the model before any compute.

With ``model.lora`` set only the adapters train; the base weights stay bit-identical. The frozen reference
of NPO / KL / RMU is the same module with its adapters switched off (``AdaptersOff`` in
``unlearn.train.module``), not a second copy. The export is the merged model (plain Hugging Face format)
plus the adapter (peft format), built from a gathered full state dict: peft does not merge under FSDP.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from unlearn.errors import ConfigError, check_range

if TYPE_CHECKING:
    from peft import PeftModel

LLAMA_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Read by the LM head path directly (its weight, not its forward): an adapter on them would be bypassed.
HEAD_MODULES = ("lm_head", "embed_tokens")
ADAPTER_DIR = "adapter"


@dataclass(frozen=True)
class LoraConfig:
    """LoRA on the linear layers named by ``target_modules`` (a module matches a name when its own name is it
    or ends with ``.`` + it, peft's rule for a list): ``W + (alpha / r) B A`` with ``A`` (r, in), ``B`` (out, r),
    ``B`` = 0 at the start (the adapted model starts as the target). ``dropout`` is on the adapter's input;
    0 keeps a run deterministic and independent of the worker count."""

    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    target_modules: tuple[str, ...] = LLAMA_LINEAR

    def __post_init__(self) -> None:
        check_range("model.lora.r", self.r, low=1)
        check_range("model.lora.alpha", self.alpha, low=0.0, low_inclusive=False)
        check_range("model.lora.dropout", self.dropout, low=0.0, high=1.0, high_inclusive=False)
        if not self.target_modules or any(not t for t in self.target_modules):
            raise ConfigError(f"model.lora.target_modules={list(self.target_modules)} is empty or has an empty name; "
                              f"valid: linear layer names, e.g. {list(LLAMA_LINEAR)}")
        head = [t for t in self.target_modules if t.split(".")[-1] in HEAD_MODULES]
        if head:
            raise ConfigError(f"model.lora.target_modules names {head}: the LM head path reads the embedding and "
                              "head weights directly, so an adapter there would not be trained; valid: linear "
                              f"layers of the decoder, e.g. {list(LLAMA_LINEAR)}")


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def check_targets(cfg: LoraConfig, modules: Iterable[tuple[str, nn.Module]]) -> list[str]:
    """The names of the modules ``cfg.target_modules`` selects; every target must match some ``nn.Linear``.

    Raises:
        ConfigError: a target that matches no module, or matches one that is not linear, naming the
            target and the linear layer names that would work.
    """
    modules = list(modules)
    linear = sorted({n.split(".")[-1] for n, m in modules if isinstance(m, nn.Linear)} - set(HEAD_MODULES))
    chosen = []
    for t in cfg.target_modules:
        hits = [(n, m) for n, m in modules if _matches(n, t)]
        bad = [n for n, m in hits if not isinstance(m, nn.Linear)]
        if not hits or bad:
            why = "matches no module of the model" if not hits else f"matches {bad[0]!r}, which is not nn.Linear"
            raise ConfigError(f"model.lora.target_modules entry {t!r} {why}; valid: linear layer names of this "
                              f"model: {linear}")
        chosen += [n for n, _ in hits]
    return sorted(set(chosen))


def check_lora_model(cfg: LoraConfig, model_name: str, *, vocab_size: int = 0, trust_remote_code: bool = False) -> None:
    """Check ``cfg`` against the model ``model_name`` names without loading weights: its skeleton is built on
    the meta device (a tiny preset from its config, any other model from its ``config.json``)."""
    from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig

    from unlearn.models.load import MODEL_PRESETS, looks_like_path

    if model_name in MODEL_PRESETS:
        p = MODEL_PRESETS.get(model_name)
        config = LlamaConfig(vocab_size=max(vocab_size, 8), hidden_size=p.hidden_size, num_hidden_layers=p.num_layers,
                             num_attention_heads=p.num_heads, intermediate_size=p.intermediate_size)
    else:
        where = Path(model_name).expanduser() if looks_like_path(model_name) else model_name
        config = AutoConfig.from_pretrained(where, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    check_targets(cfg, skeleton.named_modules())


def apply_lora(lm: nn.Module, cfg: LoraConfig, *, seed: int) -> PeftModel:
    """``lm`` with LoRA adapters (a ``PeftModel``; the base weights frozen, the adapters trainable). The
    adapters' initialisation is seeded locally (every worker builds the same one; the global RNG is kept)."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    check_targets(cfg, lm.named_modules())
    peft_cfg = PeftLoraConfig(r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout, bias="none",
                              target_modules=list(cfg.target_modules), task_type="CAUSAL_LM")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return get_peft_model(lm, peft_cfg)


def base_state_key(key: str) -> str | None:
    """The base model's name of a PeftModel state-dict key (``base_model.model.X.base_layer.weight`` ->
    ``X.weight``); None for an adapter weight."""
    if "lora_" in key:
        return None
    return key.removeprefix("base_model.model.").replace(".base_layer.", ".")


def save_lora_export(peft_lm: PeftModel, tokenizer, model_dir: Path, adapter_dir: Path) -> None:
    """The adapter (peft format) to ``adapter_dir``, then the merged model (plain Hugging Face format) and
    the tokenizer to ``model_dir``. ``peft_lm`` is merged in place: pass a copy that is not trained further."""
    peft_lm.save_pretrained(adapter_dir)
    merged = peft_lm.merge_and_unload()
    merged.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
