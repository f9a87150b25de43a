"""The catalogue of bad inputs (RELIABILITY.md): each gives a clear error before any model or worker.

``python -m tests.test_bad_inputs`` prints the catalogue as a Markdown table of the messages users see.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sweeps.cluster import free_port
from unlearn.errors import ConfigError

SPACE = {
    "name": "bad",
    "parameters": {"method.beta1": {"distribution": "uniform", "low": 0.5, "high": 8.0}},
    "objectives": [{"metric": "forget_quality", "direction": "maximize"}],
}


def _cfg(*overrides: str):
    from unlearn.train.config import load_run_config

    return load_run_config(None, list(overrides))


def _space(tmp: Path, **changes) -> Path:
    from sweeps.space import load_space

    data = json.loads(json.dumps(SPACE))
    for key, value in changes.items():
        node = data
        *parents, last = key.split("/")
        for p in parents:
            node = node[p]
        node[last] = value
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_space(path)


def _tofu_missing_column(tmp: Path, tofu: Path):
    from unlearn.benchmarks import load_benchmark
    from unlearn.benchmarks.config import DataConfig

    d = tmp / "tofu"
    shutil.copytree(tofu, d)
    rows = [json.loads(line) for line in (d / "forget01_perturbed.jsonl").read_text().splitlines()]
    (d / "forget01_perturbed.jsonl").write_text("\n".join(json.dumps({k: v for k, v in r.items()
                                                                        if k != "paraphrased_answer"}) for r in rows))
    load_benchmark(DataConfig(benchmark="tofu", path=str(d), split="forget01"))


def _retain_stats(tmp: Path, content: str):
    from unlearn.benchmarks import load_benchmark
    from unlearn.train.prepare import check_prepare_inputs

    (tmp / "model").mkdir()
    f = tmp / "stats.json"
    f.write_text(content)
    cfg = _cfg(f"model.name={tmp / 'model'}", "prepare.finetune=false", f"prepare.retain_stats={f}")
    check_prepare_inputs(cfg, load_benchmark(cfg.data))


def _export_over(tmp: Path):
    from sweeps.report import _refuse_overwrite

    (tmp / "best.yaml").write_text("x: 1")
    _refuse_overwrite(tmp / "best.yaml", False, "--out")


def _config_file(tmp: Path, text: str | None):
    from unlearn.train.config import load_run_config

    path = tmp / "run.yaml"
    if text is not None:
        path.write_text(text)
    load_run_config(path)


# (what the user did, how it is done, a pattern the message must match)
CASES = [
    ("unknown config key in an override", lambda t, d: _cfg("optim.lrr=1e-3"), r"unknown key 'optim.lrr' \(did you mean 'lr'\?\)"),
    ("override without '='", lambda t, d: _cfg("optim.lr"), r"must look like key.path=value"),
    ("config file not found", lambda t, d: _config_file(t, None), r"run.yaml' not found"),
    ("invalid YAML in a config file", lambda t, d: _config_file(t, "optim: [1,"), r"run.yaml: invalid YAML"),
    ("unknown key in a config file", lambda t, d: _config_file(t, "optim: {lrr: 1}"), r"run.yaml: unknown key 'optim.lrr'"),
    ("wrong type for a field", lambda t, d: _cfg("optim.epochs=many"), r"optim.epochs must be an integer, got 'many'"),
    ("unknown weighting", lambda t, d: _cfg("method.weighting=satimpp"), r"unknown weighting 'satimpp'.*valid: satimp"),
    ("parameter of another weighting", lambda t, d: _cfg("method.beta=2"), r"parameter 'beta' does not apply.*beta1, beta2"),
    ("negative exponent", lambda t, d: _cfg("method.beta1=-1"), r"beta1=-1.0 is out of range; valid: \[0.0, inf\)"),
    ("sampling fraction outside (0, 1]", lambda t, d: _cfg("method.sampling=topk", "method.k=1.5"), r"k=1.5 is out of range; valid: \(0.0, 1.0\]"),
    ("group size < 1", lambda t, d: _cfg("method.granularity=group", "method.group_size=0"), r"group_size=0 is out of range; valid: an integer >= 1"),
    ("unknown objective", lambda t, d: _cfg("method.objective=dpo"), r"unknown objective 'dpo'.*ga, gd, kl, npo, simnpo"),
    ("unknown benchmark", lambda t, d: _cfg("data.benchmark=mmlu"), r"'mmlu' in data.benchmark.*generated, muse, tofu"),
    ("unknown split", lambda t, d: _cfg("data.split=forget02"), r"'forget02'.*forget01, forget05, forget10"),
    ("keep_best_by without per-epoch evaluation", lambda t, d: _cfg("keep_best_by=forget_quality"), r"keep_best_by needs epoch_eval"),
    ("unknown metric for keep_best_by", lambda t, d: _cfg("epoch_eval=true", "keep_best_by=fq"), r"unknown metric 'fq'"),
    ("unknown scaling strategy", lambda t, d: _cfg("scaling.strategy=zero3"), r"'zero3'.*auto, fsdp, ddp, single"),
    ("zero workers", lambda t, d: _cfg("scaling.workers=0"), r"scaling.workers=0 is out of range"),
    ("model path not found", lambda t, d: __import__("unlearn.models", fromlist=["x"]).check_model_source(_cfg("model.name=./no-model").model), r"model path './no-model' not found"),
    ("TOFU directory not found", lambda t, d: __import__("unlearn.benchmarks", fromlist=["x"]).load_benchmark(_cfg("data.benchmark=tofu", f"data.path={t / 'none'}").data), r"none"),
    ("TOFU file missing a column", lambda t, d: _tofu_missing_column(t, d), r"forget01_perturbed.*paraphrased_answer"),
    ("retain statistics of the wrong length", lambda t, d: _retain_stats(t, '{"forget_truth_ratios": [0.5, 0.6]}'), r"hold 2 truth ratios but the forget split has 40"),
    ("retain statistics file not JSON", lambda t, d: _retain_stats(t, "{oops"), r"stats.json"),
    ("search space: unknown distribution", lambda t, d: _space(t, **{"parameters/method.beta1": {"distribution": "normal", "low": 0, "high": 1}}), r"space.yaml.*distribution.*'normal'.*uniform, loguniform, int, categorical, fixed"),
    ("search space: low >= high", lambda t, d: _space(t, **{"parameters/method.beta1": {"distribution": "uniform", "low": 2, "high": 1}}), r"space.yaml.*method.beta1.*low"),
    ("search space: loguniform with low <= 0", lambda t, d: _space(t, **{"parameters/method.beta1": {"distribution": "loguniform", "low": 0, "high": 1}}), r"space.yaml.*method.beta1.*loguniform"),
    ("search space: unknown parameter", lambda t, d: _space(t, **{"parameters/method.beta3": {"distribution": "uniform", "low": 0, "high": 1}}), r"space.yaml.*method.beta3"),
    ("search space: condition on an unknown parameter", lambda t, d: _space(t, **{"parameters/method.beta1": {"distribution": "uniform", "low": 0, "high": 1, "when": {"method.weightin": ["satimp"]}}}), r"space.yaml.*method.weightin"),
    ("search space: objective metric runs do not produce", lambda t, d: _space(t, objectives=[{"metric": "forget_qualty", "direction": "maximize"}]), r"space.yaml.*forget_qualty"),
    ("search space: invalid YAML", lambda t, d: (t / "s.yaml").write_text("parameters: [") and __import__("sweeps.space", fromlist=["x"]).load_space(t / "s.yaml"), r"s.yaml"),
    ("unreachable --mlflow-uri", lambda t, d: __import__("sweeps.tracking", fromlist=["x"]).check_tracking_uri(f"http://127.0.0.1:{free_port()}"), r"http://127.0.0.1:\d+"),
    ("--mlflow-uri with an unknown scheme", lambda t, d: __import__("sweeps.tracking", fromlist=["x"]).check_tracking_uri("ftp://x"), r"ftp://x"),
    ("resume of a directory without a sweep", lambda t, d: __import__("sweeps.sweep", fromlist=["x"]).load_sweep_meta(t), r"holds no sweep"),
    ("export-best over an existing file", lambda t, d: _export_over(t), r"already exists and is not empty; pass --force"),
]


@pytest.mark.parametrize("what,action,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_reported_clearly(what, action, pattern, tmp_path, tofu_dir):
    with pytest.raises(ConfigError, match=pattern):
        action(tmp_path, tofu_dir)


def test_the_catalogue_has_at_least_20_entries():
    assert len(CASES) >= 20


def catalogue_markdown() -> str:
    """The table of RELIABILITY.md: each bad input and the message the user sees."""
    import tempfile

    from tests.conftest import find_tofu_dir

    rows = ["| bad input | message the user sees |", "|---|---|"]
    for what, action, _ in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                action(Path(tmp), find_tofu_dir())
                msg = "(no error!)"
            except ConfigError as e:
                msg = str(e).replace(tmp, "<tmp>").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| {what} | `{msg[:300]}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(catalogue_markdown())
