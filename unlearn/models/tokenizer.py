"""An offline byte-level BPE tokenizer for tiny models, trained on a benchmark's own text.

Byte-level pre-tokenization and decoding make every string encodable (no unknown characters) and
``decode(encode(x)) == x``; offsets map tokens back to characters, which key-phrase masks need.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from unlearn.errors import ConfigError, check_range

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)  # ids 0..3, in this order


def train_tokenizer(texts: Sequence[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE on ``texts`` (deterministic for the same texts).

    Args:
        texts: training strings, e.g. ``text_corpus(bench)``.
        vocab_size: the most tokens, special tokens and the 256 byte symbols included; a small corpus
            may stop earlier, so size models with ``len(tokenizer)``.

    Returns:
        A fast tokenizer with ``<pad>``, ``<s>`` (bos), ``</s>`` (eos), ``<unk>``, right padding, no
        chat template; it adds no special tokens by itself (``encode_prompt`` prepends BOS).

    Raises:
        ConfigError: if ``texts`` is empty or ``vocab_size`` is below 256 + the special tokens.
    """
    check_range("vocab_size", vocab_size, low=256 + len(SPECIAL_TOKENS))
    if not texts:
        raise ConfigError("train_tokenizer needs at least one text; got none")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=PAD, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        padding_side="right",
        clean_up_tokenization_spaces=False,  # keeps decode an exact inverse of encode
    )
