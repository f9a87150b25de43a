"""What the attacks on an unlearned model are configured by (``eval.quant``, ``eval.relearn``).

Both are off by default (``None``). Their settings are checked here, at load, before any compute; what
needs the data (whether a fraction leaves a forget row on both sides) is checked where the data is
loaded, before the model is (``unlearn.attacks.relearn.relearn_split``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import ClassVar, Literal

from unlearn.errors import ConfigError, check_range

QuantCode = Literal["fp4", "nf4", "int4"]
QuantBackend = Literal["torch", "bitsandbytes"]
BITS: tuple[int, ...] = (4, 8)


@dataclass(frozen=True)
class QuantConfig:
    """The quantization attack (Zhang et al., ICLR 2025): the unlearned model evaluated again with its
    Linear weights quantized to each width in ``bits``.

    ``code``: the 4-bit code. ``fp4`` (transformers' ``BitsAndBytesConfig(load_in_4bit=True)`` default, what
    the paper ran) and ``nf4`` are bitsandbytes' codes: per block of ``blocksize`` weights, the weights over
    the block's largest magnitude rounded to the nearest of 16 code values. ``int4`` is plain symmetric
    integer round-to-nearest (levels -7..7 of the block's largest magnitude): another quantizer, named
    apart. 8 bits is always LLM.int8's weights (``load_in_8bit=True``): each output row rounded to int8
    over its largest magnitude.

    ``backend``: ``torch`` (this package's quantizer: the same weights as bitsandbytes', on any device);
    ``bitsandbytes``: the model reloaded through transformers' bitsandbytes integration, as the paper did
    (the ``quant`` extra; ``fp4`` / ``nf4`` with blocks of 64 only).

    ``utility``: also report the utility metrics of the quantized model (False: the forget-side metrics
    only, and a benchmark that can skips the sets only utility needs: an attack then costs a fraction of
    an evaluation).
    """

    bits: tuple[int, ...] = BITS
    code: QuantCode = "fp4"
    blocksize: int = 64
    backend: QuantBackend = "torch"
    utility: bool = False

    def __post_init__(self) -> None:
        if not self.bits:
            raise ConfigError("eval.quant.bits is empty; valid: a list of 4 and/or 8 (or eval.quant: null for no "
                              "quantization attack)")
        for b in self.bits:
            if b not in BITS:
                raise ConfigError(f"eval.quant.bits has {b!r}; valid: 4, 8")
        if len(set(self.bits)) != len(self.bits):
            raise ConfigError(f"eval.quant.bits={list(self.bits)} lists a width twice; valid: each of 4, 8 once")
        check_range("eval.quant.blocksize", self.blocksize, low=2, high=4096)
        if self.backend == "bitsandbytes":
            self._check_bitsandbytes()

    def _check_bitsandbytes(self) -> None:
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError("eval.quant.backend='bitsandbytes' but bitsandbytes is not installed here; valid: "
                              "install the quant extra (pip install -c constraints.txt 'unlearn-sweeps[quant]'), "
                              "or eval.quant.backend=torch (the same weights, no dependency)")
        if 4 in self.bits and self.code == "int4":
            raise ConfigError("eval.quant.code='int4' (integer round-to-nearest) is not a bitsandbytes code; valid "
                              "with backend bitsandbytes: fp4, nf4; or eval.quant.backend=torch")
        if 4 in self.bits and self.blocksize != 64:
            raise ConfigError(f"eval.quant.blocksize={self.blocksize} with backend bitsandbytes: transformers' "
                              "integration quantizes blocks of 64; valid: 64, or eval.quant.backend=torch")

    def prefix(self, bits: int) -> str:
        """The metric prefix of the ``bits``-wide evaluation (``q4_``, ``q8_``)."""
        return f"q{bits}_"


@dataclass(frozen=True)
class RelearnConfig:
    """The relearning attack (Hu et al., ICLR 2025): the unlearned model fine-tuned for ``steps`` steps
    (AdamW at constant ``lr``, batches of ``batch_size``, plain NLL on what the forget side trains on) on
    ``fraction`` of the benchmark's forget units (TOFU's questions, MUSE's articles, WMDP's documents), then
    evaluated on what they held out (``Benchmark.relearn_sets``: the rest in place of the forget set, where
    the metrics are about its rows).

    Which rows it relearns on and the batch order are drawn from ``seed`` alone (not the trial's seed):
    every trial of a sweep is attacked the same way. ``utility``: as ``QuantConfig.utility``.
    """

    prefix: ClassVar[str] = "relearn_"  # of its metrics' names

    fraction: float = 0.25
    steps: int = 10
    lr: float = 1e-3
    batch_size: int = 4
    seed: int = 0
    utility: bool = False

    def __post_init__(self) -> None:
        check_range("eval.relearn.fraction", self.fraction, low=0.0, high=1.0, low_inclusive=False,
                    high_inclusive=False)
        if self.steps < 1:
            raise ConfigError(f"eval.relearn.steps={self.steps} is out of range; valid: 1 or more (or eval.relearn: "
                              "null for no relearning attack)")
        check_range("eval.relearn.lr", self.lr, low=0.0, low_inclusive=False)
        check_range("eval.relearn.batch_size", self.batch_size, low=1)
        check_range("eval.relearn.seed", self.seed, low=0)
