"""TOFU's ``data`` options: key-token annotations and the prompt format (shared with the generated benchmark)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from unlearn.benchmarks.options import PATH, BenchmarkOptions
from unlearn.data.formatting import PROMPT_FORMATS, PromptFormat
from unlearn.errors import ConfigError, unknown_name


@dataclass(frozen=True)
class TofuOptions(BenchmarkOptions):
    """``importance_path``: a key-token annotation file of the forget split (``unlearn.data.importance``)
    replacing the benchmark's own (TOFU: the SatImp authors' annotations shipped with the package;
    generated: its key facts); ``method.importance`` uses them. ``prompt_format`` names a
    ``PROMPT_FORMATS`` entry (``tofu_llama2``, ``tofu_phi``: the formats TOFU's models were fine-tuned
    with), used in fine-tuning, unlearning and evaluation."""

    importance_path: str | None = field(default=None, metadata=PATH)
    prompt_format: str = "auto"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.prompt_format not in PROMPT_FORMATS:
            raise unknown_name("prompt format", self.prompt_format, PROMPT_FORMATS, "data.prompt_format")
        if self.importance_path is not None and not Path(self.importance_path).is_file():
            raise ConfigError(f"data.importance_path={self.importance_path!r} is not a file; valid: a key-token "
                              "annotation file (JSON lines of question, key_text), or null for the benchmark's own")

    @property
    def prompt(self) -> PromptFormat:
        """The ``PromptFormat`` named by ``prompt_format``."""
        return PROMPT_FORMATS[self.prompt_format]
