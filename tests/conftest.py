"""Session fixtures shared by the whole suite: an offline tokenizer and the local TOFU copy."""

from __future__ import annotations

import os

# Tests never reach the Hugging Face hub; set before datasets/transformers read them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def find_tofu_dir() -> Path | None:
    """``$UNLEARN_TOFU_DIR``, else ``<repo>/../shared/data/tofu``, else ``<repo>/shared/data/tofu``."""
    candidates = [REPO / ".." / "shared" / "data" / "tofu", REPO / "shared" / "data" / "tofu"]
    if os.environ.get("UNLEARN_TOFU_DIR"):
        candidates.insert(0, Path(os.environ["UNLEARN_TOFU_DIR"]))
    return next((c.resolve() for c in candidates if (c / "MANIFEST.json").is_file()), None)


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    """The local TOFU JSON-lines directory (skips the test when there is none)."""
    path = find_tofu_dir()
    if path is None:
        pytest.skip("no local TOFU copy: set UNLEARN_TOFU_DIR or provide <repo>/../shared/data/tofu")
    return path


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE trained on the default generated benchmark's text."""
    from unlearn.data.benchmark import DataConfig, load_benchmark, text_corpus
    from unlearn.models.tokenizer import train_tokenizer

    return train_tokenizer(text_corpus(load_benchmark(DataConfig())))
