"""Models and tokenizers: tiny presets built from config, or any HF causal LM."""

from unlearn.models.load import (
    MODEL_PRESETS,
    ModelConfig,
    build_tiny,
    check_model_source,
    count_parameters,
    load_model,
    load_tokenizer,
    save_model,
)
from unlearn.models.lora import LoraConfig
from unlearn.models.tokenizer import train_tokenizer

__all__ = ["LoraConfig", "MODEL_PRESETS", "ModelConfig", "build_tiny", "check_model_source", "count_parameters", "load_model",
           "load_tokenizer", "save_model", "train_tokenizer"]
