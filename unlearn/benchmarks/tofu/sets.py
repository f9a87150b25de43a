"""The TOFU family's rows (TOFU and its generated look-alike): forget/retain/holdout/full and the
``*_perturbed`` evaluation sets of one forget split, and the tokenizer corpus they give."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

from unlearn.data.formatting import PromptFormat
from unlearn.data.importance import load_key_texts
from unlearn.errors import unknown_name

FORGET_SPLITS = ("forget01", "forget05", "forget10")
EVAL_SET_NAMES = ("forget", "retain", "real_authors", "world_facts")


@dataclass(frozen=True)
class QASets:
    """Rows of one benchmark split. ``*_eval`` are the ``_perturbed`` configurations (with
    ``perturbed_answer`` lists); ``general_knowledge`` is the tiny models' pretraining set
    (empty for TOFU, whose models already know the world)."""

    name: str
    forget: tuple[dict, ...]
    retain: tuple[dict, ...]
    holdout: tuple[dict, ...]
    full: tuple[dict, ...]
    forget_eval: tuple[dict, ...]
    retain_eval: tuple[dict, ...]
    real_authors_eval: tuple[dict, ...]
    world_facts_eval: tuple[dict, ...]
    general_knowledge: tuple[dict, ...] = ()
    forget_key_texts: tuple[str, ...] | None = None  # one key-token annotation per forget row; None: none

    def eval_sets(self) -> dict[str, tuple[dict, ...]]:
        """The evaluation sets keyed ``forget``, ``retain``, ``real_authors``, ``world_facts``."""
        return {
            "forget": self.forget_eval, "retain": self.retain_eval,
            "real_authors": self.real_authors_eval, "world_facts": self.world_facts_eval,
        }


def split_configs(split: str) -> dict[str, str]:
    """Configuration name of each ``Benchmark`` field for forget split ``split`` (e.g. ``forget10``)."""
    if split not in FORGET_SPLITS:
        raise unknown_name("split", split, FORGET_SPLITS)
    pct = split.removeprefix("forget")
    return {
        "forget": split, "retain": f"retain{100 - int(pct)}", "holdout": f"holdout{pct}", "full": "full",
        "forget_eval": f"{split}_perturbed", "retain_eval": "retain_perturbed",
        "real_authors_eval": "real_authors_perturbed", "world_facts_eval": "world_facts_perturbed",
    }


def assemble(name: str, split: str, get: Callable[[str], list[dict]], general: list[dict],
              importance_path: str | None, own_key_texts: Callable[[list[dict]], tuple[str, ...]] | None) -> QASets:
    """The benchmark's rows; key texts from ``importance_path`` when set, else the benchmark's own."""
    rows = {f: tuple(get(c)) for f, c in split_configs(split).items()}
    forget = list(rows["forget"])
    if importance_path is not None:
        keys = load_key_texts(importance_path, forget, split)
    else:
        keys = own_key_texts(forget) if own_key_texts is not None else None
    return QASets(name=name, general_knowledge=tuple(general), forget_key_texts=keys, **rows)


_TEXT_COLUMNS = ("question", "answer", "paraphrased_question", "paraphrased_answer",
                 "option1", "option2", "option3", "option4")


def text_corpus(bench: QASets, fmt: PromptFormat | None = PromptFormat()) -> list[str]:
    """Every distinct string of the benchmark, in a fixed order: a tokenizer's training text.

    Questions, answers, paraphrases, perturbed answers and options; with ``fmt``, also each question
    wrapped in its plain prompt, so that the prefixes (``Question:``, ``Answer:``) become few tokens.
    """
    seen: dict[str, None] = {}
    for f in fields(bench):
        rows = getattr(bench, f.name)
        if not isinstance(rows, tuple) or f.name == "forget_key_texts":  # strings, not rows
            continue
        for row in rows:
            for col in _TEXT_COLUMNS:
                if isinstance(row.get(col), str):
                    seen.setdefault(row[col])
            for text in row.get("perturbed_answer") or ():
                seen.setdefault(text)
            if fmt is not None:
                seen.setdefault(f"{fmt.question_prefix}{row['question']}{fmt.answer_prefix}")
    return list(seen)
