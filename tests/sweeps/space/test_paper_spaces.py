"""The paper-protocol presets (search_spaces/paper/): each loads, every trial resolves, one runs small."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from sweeps.space import SPACES_DIR, define_by_run, load_space, trial_run_config
from unlearn.config import apply_overrides
from unlearn.train.config import run_config_from_dict, run_config_to_dict

PAPER = sorted((SPACES_DIR / "paper").glob("*.yaml"))
FAMILIES = ("saturation", "importance", "granularity", "hardsampling", "satimp")
MODELS = {"llama2": ("locuslab/tofu_ft_llama2-7b", "tofu_llama2", 1e-5),
          "phi": ("locuslab/tofu_ft_phi-1.5", "tofu_phi", 2e-5)}


def test_every_family_for_both_models():
    assert {p.stem for p in PAPER} == {f"{f}_{m}" for f in FAMILIES for m in MODELS}


@pytest.mark.parametrize("path", PAPER, ids=lambda p: p.stem)
def test_paper_space_follows_the_protocol_and_every_trial_resolves(path: Path):
    space = load_space(f"paper/{path.stem}")  # by name, as the CLI takes it
    model, fmt, lr = MODELS[path.stem.rsplit("_", 1)[1]]
    base = space.base_config
    assert (base.model.name, base.data.options.prompt_format, base.optim.lr) == (model, fmt, lr)
    assert (base.data.benchmark, base.data.max_length, base.prepare.finetune) == ("tofu", 500, False)
    assert (base.optim.epochs, base.optim.batch_size, base.optim.warmup_epochs, base.optim.weight_decay) == (5, 16, 1, 0)
    assert (base.scaling.use_gpu, base.scaling.resolved_strategy) == (True, "fsdp")
    assert (space.metric_names, space.directions) == (("forget_es",), ("minimize",))
    # the reference's hard-sampling runs sum the kept tokens' CE (no division); the others take means
    assert base.method.reduction == ("sum" if path.stem.startswith("hardsampling") else "mean")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for point in space.initial_points:
        study.enqueue_trial(dict(point))
    suggest = define_by_run(space)
    for _ in range(space.budget.num_samples):
        trial = study.ask()
        cfg = trial_run_config(space, {**trial.params, **(suggest(trial) or {})}, seed=0)
        assert cfg.optim == base.optim and cfg.data == base.data
        study.tell(trial, 0.0)


# CPU-sized: the preset's hub model becomes a tiny random Llama saved locally, still used as it is
# (prepare.finetune: false) with retain statistics from a file, so nothing is fine-tuned before unlearning.
SMALL = ["model.dtype=float32", "model.trust_remote_code=false", "data.split=forget01", "data.max_length=48",
         "optim.epochs=1", "optim.micro_batch_size=null", "scaling.workers=1", "scaling.use_gpu=false",
         "scaling.strategy=auto", "scaling.launcher=local", "eval.max_length=48", "eval.max_new_tokens=4",
         "eval.batch_size=64", "eval.rouge=false"]


def _local_tiny_target(tofu_dir: Path, out: Path) -> Path:
    from unlearn.benchmarks import load_benchmark
    from unlearn.benchmarks.config import DataConfig
    from unlearn.benchmarks.tofu.sets import text_corpus
    from unlearn.models import build_tiny, save_model, train_tokenizer
    from unlearn.models.load import ModelConfig

    bench = load_benchmark(DataConfig(benchmark="tofu", path=str(tofu_dir), split="forget01"))
    tok = train_tokenizer(text_corpus(bench, None), 1024)
    model = build_tiny(ModelConfig(name="tiny-2l"), len(tok), seed=0, pad_id=tok.pad_token_id,
                       bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    return save_model(model, tok, out)


@pytest.mark.slow
def test_importance_preset_runs_end_to_end_on_local_tofu_with_a_tiny_model(tofu_dir, cache_dir, tmp_path):
    """The att_ variant (uniform weights, key tokens only) in the Llama-2 prompt format, shrunk to CPU size."""
    from unlearn.benchmarks.tofu.reference import save_retain_stats
    from unlearn.train.run import run_local

    space = load_space("paper/importance_llama2")
    point = space.initial_points[0]
    assert point["method.importance"] is True
    target = _local_tiny_target(tofu_dir, tmp_path / "target")
    save_retain_stats(tmp_path / "retain_stats.json", [0.5 + i / 100 for i in range(40)])
    data = run_config_to_dict(trial_run_config(space, point, seed=0))
    cfg = run_config_from_dict(apply_overrides(data, [
        *SMALL, f"model.name={target}", f"prepare.retain_stats={tmp_path / 'retain_stats.json'}",
        f"data.path={tofu_dir}", f"cache_dir={cache_dir}"]))
    assert cfg.method.importance and cfg.data.options.prompt_format == "tofu_llama2" and not cfg.prepare.finetune
    result = run_local(cfg, tmp_path / "run", log=lambda s: None)
    assert {"forget_es", "forget_es_paraphrased", "forget_quality"} <= set(result.metrics)
    assert result.metrics["train/loss"] == result.metrics["train/loss"]  # finite, not NaN
