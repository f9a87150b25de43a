"""Session fixtures shared by the whole suite: an offline tokenizer and the local TOFU copy."""

from __future__ import annotations

import os

# Tests never reach the Hugging Face hub; set before datasets/transformers read them.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# A local test cluster needs no token (ray >= 2.59 enables token auth by default); no usage reports.
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MUSE_DIR = (REPO / ".." / "shared" / "data" / "muse_news").resolve()  # the local MUSE-News copy


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` skip without CUDA: the one place that decides it."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def find_tofu_dir() -> Path | None:
    """``$UNLEARN_TOFU_DIR``, else ``<repo>/../shared/data/tofu``, else ``<repo>/shared/data/tofu``."""
    candidates = [REPO / ".." / "shared" / "data" / "tofu", REPO / "shared" / "data" / "tofu"]
    if os.environ.get("UNLEARN_TOFU_DIR"):
        candidates.insert(0, Path(os.environ["UNLEARN_TOFU_DIR"]))
    return next((c.resolve() for c in candidates if (c / "MANIFEST.json").is_file()), None)


@pytest.fixture(scope="session")
def tofu_dir() -> Path:
    """The local TOFU JSON-lines directory (a missing copy fails the test: no silently skipped checks)."""
    path = find_tofu_dir()
    if path is None:
        pytest.fail("no local TOFU copy: set UNLEARN_TOFU_DIR or provide <repo>/../shared/data/tofu")
    return path


@pytest.fixture(scope="session")
def tokenizer():
    """A byte-level BPE trained on the default generated benchmark's text."""
    from unlearn.benchmarks import load_benchmark
    from unlearn.benchmarks.config import DataConfig
    from unlearn.benchmarks.tofu.sets import text_corpus
    from unlearn.models.tokenizer import train_tokenizer

    return train_tokenizer(text_corpus(load_benchmark(DataConfig())))


# Small setup for mechanics tests (seconds to prepare); the default setup is used where quality matters.
SMALL = ["model.name=tiny-2l", "data.num_authors=8", "data.qa_per_author=4", "prepare.epochs=6",
         "optim.epochs=2", "optim.batch_size=4", "eval.max_new_tokens=12", "eval.batch_size=64"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One prepare cache for the whole session: each setup is prepared once."""
    return tmp_path_factory.mktemp("prepare-cache")


@pytest.fixture(scope="session")
def small_overrides(cache_dir) -> list[str]:
    return [f"cache_dir={cache_dir}", *SMALL]


@pytest.fixture(scope="session")
def default_prepared(cache_dir):
    """The embedded default setup (generated benchmark, tiny model), prepared once."""
    from unlearn.train.config import load_run_config
    from unlearn.train.prepare import prepare

    cfg = load_run_config(None, [f"cache_dir={cache_dir}"])
    return cfg, prepare(cfg, log=lambda s: None)


# LoRA on the small setup (SatImp-NPO: the adapters-off reference in play; no generation, which nothing using it
# reads): the one-worker run tests/unlearn/train/test_run.py checks and tests/sweeps/test_ray_run.py compares
# its two-worker DDP and FSDP2 runs with, run once.
LORA = ["model.lora={r: 4}", "method.objective=npo", "method.alpha=1.0", "optim.lr=1e-2", "eval.rouge=false"]


@pytest.fixture(scope="session")
def lora_one_worker(small_overrides, tmp_path_factory):
    """``(cfg, result, out_dir)`` of the LoRA run on one worker, in this process (``run_local``)."""
    from unlearn.train.config import load_run_config
    from unlearn.train.run import run_local

    cfg = load_run_config(None, [*small_overrides, *LORA])
    out = tmp_path_factory.mktemp("lora-w1")
    return cfg, run_local(cfg, out, log=lambda s: None), out
