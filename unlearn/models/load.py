"""Models: tiny Llama presets built from config, or any Hugging Face causal LM by hub name / local path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import torch

from unlearn.errors import ConfigError, check_range
from unlearn.models.lora import LoraConfig
from unlearn.registry import Registry

if TYPE_CHECKING:  # transformers is imported where a model is built or loaded: configs stay light
    from transformers import LlamaForCausalLM, PreTrainedModel

DType = Literal["float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class TinyPreset:
    """A randomly initialised Llama sized for CPU tests and demos."""

    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int


MODEL_PRESETS: Registry[TinyPreset] = Registry("model preset")
MODEL_PRESETS.register("tiny", doc="~1.5 M parameters: hidden 128, 4 layers")(TinyPreset(128, 4, 4, 384))
MODEL_PRESETS.register("tiny-4m", doc="~4 M parameters: hidden 256, 4 layers")(TinyPreset(256, 4, 8, 768))
MODEL_PRESETS.register("tiny-2l", doc="~0.5 M parameters: hidden 64, 2 layers (tests)")(TinyPreset(64, 2, 4, 192))


@dataclass(frozen=True)
class ModelConfig:
    """Which model to unlearn.

    ``name`` is a tiny preset (``tiny``, ``tiny-4m``, ``tiny-2l``: built from config, tokenizer trained
    offline on the benchmark), a local directory saved with ``save_pretrained``, or a hub id.
    """

    name: str = "tiny"
    dtype: DType = "float32"
    vocab_size: int = 2048  # tokenizer size for tiny presets
    max_position_embeddings: int = 256
    trust_remote_code: bool = False
    lora: LoraConfig | None = None  # train LoRA adapters only (unlearn.models.lora); None: every weight trains

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("model.name is empty; valid: a preset (" + ", ".join(MODEL_PRESETS.names())
                              + "), a local model directory or a hub id")
        check_range("model.vocab_size", self.vocab_size, low=260)
        check_range("model.max_position_embeddings", self.max_position_embeddings, low=8)

    @property
    def is_preset(self) -> bool:
        return self.name in MODEL_PRESETS

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)


def looks_like_path(name: str) -> bool:
    """A name that can only be a local path: absolute, relative with ./ ../ ~, or existing."""
    return name.startswith(("/", "./", "../", "~")) or Path(name).exists()


def check_model_source(cfg: ModelConfig) -> None:
    """Fail early (before any training) when a local model path does not exist."""
    if cfg.is_preset:
        return
    if looks_like_path(cfg.name) and not Path(cfg.name).expanduser().is_dir():
        raise ConfigError(
            f"model path {cfg.name!r} not found; valid: a preset ({', '.join(MODEL_PRESETS.names())}), "
            "an existing directory saved with save_pretrained, or a hub id like 'org/model'"
        )


def build_tiny(cfg: ModelConfig, vocab_size: int, *, seed: int, pad_id: int, bos_id: int, eos_id: int) -> LlamaForCausalLM:
    """A randomly initialised Llama from a preset; the seed is local (global RNG state is restored)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    preset = MODEL_PRESETS.get(cfg.name)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=preset.hidden_size,
        num_hidden_layers=preset.num_layers,
        num_attention_heads=preset.num_heads,
        num_key_value_heads=preset.num_heads,
        intermediate_size=preset.intermediate_size,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=False,
        pad_token_id=pad_id,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    return model.to(cfg.torch_dtype)


def load_model(path_or_name: str | Path, dtype: torch.dtype = torch.float32, *, trust_remote_code: bool = False) -> PreTrainedModel:
    """Load a causal LM from a local directory or the hub."""
    name = str(path_or_name)
    if looks_like_path(name) and not Path(name).expanduser().is_dir():
        raise ConfigError(f"model path {name!r} not found")
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(Path(name).expanduser() if looks_like_path(name) else name,
                                                dtype=dtype, trust_remote_code=trust_remote_code)


def load_tokenizer(path_or_name: str | Path, *, trust_remote_code: bool = False):
    """Load a tokenizer; a missing pad token becomes the EOS token (causal LMs often lack one)."""
    name = str(path_or_name)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(Path(name).expanduser() if looks_like_path(name) else name,
                                        trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def save_model(model: PreTrainedModel, tokenizer, out_dir: str | Path) -> Path:
    """Save model and tokenizer in HF format (``from_pretrained`` reloads both)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
