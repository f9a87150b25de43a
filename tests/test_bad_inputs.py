"""The catalogue of bad inputs (RELIABILITY.md): each gives a clear error before any model or worker.

``python -m tests.test_bad_inputs`` prints the catalogue as a Markdown table of the messages users see.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
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
    from sweeps.report.export import _refuse_overwrite

    (tmp / "best.yaml").write_text("x: 1")
    _refuse_overwrite(tmp / "best.yaml", False, "--out")


def _config_file(tmp: Path, text: str | None):
    from unlearn.train.config import load_run_config

    path = tmp / "run.yaml"
    if text is not None:
        path.write_text(text)
    load_run_config(path)


def closed_port() -> int:
    """A real closed port: bound by this process, then closed (nothing listens there now)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _space_file(tmp: Path) -> Path:
    path = tmp / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def _launch(tmp: Path, **settings):
    from sweeps.sweep import SweepSettings, launch_sweep

    launch_sweep(_space_file(tmp), [], SweepSettings(**{"out_dir": str(tmp / "out"), "progress": False, **settings}))


def _a_file(tmp: Path) -> Path:
    (tmp / "a_file").write_text("not a directory")
    return tmp / "a_file"


def fake_sweep(tmp: Path) -> Path:
    """A sweep directory as a launch writes it before its first trial (settings, space, their copy)."""
    from sweeps.layout import SWEEP_BACKUP, SWEEP_FILE, SweepSettings, write_json_atomic
    from unlearn.config import to_dict

    root = tmp / "sweep"
    root.mkdir()
    settings = SweepSettings(out_dir=str(root), progress=False)
    meta = {"sweep_id": "0123456789ab", "name": "bad", "study_name": "bad-0123456789ab", "settings": to_dict(settings),
            "tracking_uri": settings.tracking_uri, "optuna_storage": settings.study_storage,
            "ray_storage": settings.ray_storage}
    (root / "space.yaml").write_text(yaml.safe_dump(SPACE))
    write_json_atomic(root / SWEEP_FILE, meta)
    write_json_atomic(root / SWEEP_BACKUP, meta)
    return root


def _wrong_shape(tmp: Path, doc) -> None:
    from sweeps.layout import load_sweep_meta

    root = fake_sweep(tmp)
    (root / "sweep.json").write_text(json.dumps(doc))
    load_sweep_meta(root)


def _export(tmp: Path, out: Path, model: Path | None = None, force: bool = False):
    from sweeps.report import export_best
    from sweeps.space import load_space

    root = fake_sweep(tmp)
    export_best(root, load_space(root / "space.yaml"), out, model_dir=model, force=force)


def _model_dir_without_config(tmp: Path):
    from sweeps.preflight import check_model_dirs

    (tmp / "model").mkdir()
    (tmp / "model" / "tokenizer.json").write_text("{}")
    check_model_dirs(_cfg(f"model.name={tmp / 'model'}"))


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
    ("unknown objective", lambda t, d: _cfg("method.objective=dpo"), r"unknown objective 'dpo'.*ga, gd, kl, npo, rmu, simnpo"),
    ("unknown benchmark", lambda t, d: _cfg("data.benchmark=mmlu"), r"'mmlu' in data.benchmark.*generated, muse, tofu"),
    ("unknown split", lambda t, d: _cfg("data.split=forget02"), r"'forget02'.*forget01, forget05, forget10"),
    ("option of another benchmark", lambda t, d: _cfg("data.benchmark=tofu", "data.max_articles=8"), r"data.max_articles=8 does not apply to benchmark 'tofu': it is an option of benchmarks 'muse' and 'wmdp'; valid options of 'tofu': importance_path, prompt_format"),
    ("a learning rate that is not finite", lambda t, d: _cfg("optim.lr=inf"), r"optim.lr=inf is not a finite number"),
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
    ("non-finite hyper-parameter", lambda t, d: _cfg("method.beta1=inf"), r"beta1=inf is not a finite number"),
    ("--out an existing file", lambda t, d: _launch(t, out_dir=str(_a_file(t))), r"--out .*a_file is an existing file"),
    ("--out under a file (unwritable)", lambda t, d: _launch(t, out_dir=str(_a_file(t) / "out")), r"cannot be created: .*a_file is a file"),
    ("--storage-path under a file (unwritable)", lambda t, d: _launch(t, storage_path=str(_a_file(t) / "ray")), r"--storage-path .*a_file is a file"),
    ("--storage-path with an unknown scheme", lambda t, d: _launch(t, storage_path="foo://bar"), r"unknown storage scheme 'foo'; valid: .*s3://"),
    ("--optuna-storage with an unknown scheme", lambda t, d: _launch(t, optuna_storage="foo://bar"), r"--optuna-storage 'foo://bar': unknown database kind 'foo'"),
    ("--optuna-storage a relative sqlite path", lambda t, d: _launch(t, optuna_storage="sqlite:///optuna.db"), r"relative sqlite path.*absolute one"),
    ("--optuna-storage a file that is not a database", lambda t, d: _launch(t, optuna_storage=f"sqlite:///{_a_file(t)}"), r"a_file exists and is not an SQLite database"),
    ("--mlflow-uri under a file (unwritable)", lambda t, d: _launch(t, mlflow_uri=f"sqlite:///{_a_file(t)}/mlflow.db"), r"a_file is not a writable directory"),
    ("--address with nothing listening (a closed port)", lambda t, d: _launch(t, address=f"127.0.0.1:{closed_port()}"), r"cannot connect to the Ray cluster at --address '127.0.0.1:\d+': nothing answers.*valid: auto"),
    ("--address that is no Ray address", lambda t, d: _launch(t, address="http://127.0.0.1:8265"), r"not a Ray cluster address; valid: auto"),
    ("model directory without config.json", lambda t, d: _model_dir_without_config(t), r"without config.json, not a saved model"),
    ("sweep.json of the wrong shape", lambda t, d: _wrong_shape(t, ["not", "an", "object"]), r"sweep.json \(the sweep's settings\) is damaged: it holds a JSON list.*cp "),
    ("sweep.json missing a key", lambda t, d: _wrong_shape(t, {"sweep_id": "x"}), r"damaged: 'name' is missing"),
    ("export-best --out an existing directory", lambda t, d: _export(t, t), r"--out .* is an existing directory"),
    ("export-best --out under a file (unwritable)", lambda t, d: _export(t, _a_file(t) / "best.yaml"), r"cannot be created: .*a_file is a file"),
    ("export-best --model an existing file, with --force", lambda t, d: _export(t, t / "best.yaml", _a_file(t), force=True), r"--model .*a_file is an existing file"),
]


@pytest.mark.parametrize("what,action,pattern", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_reported_clearly(what, action, pattern, tmp_path, tofu_dir):
    with pytest.raises(ConfigError, match=pattern):
        action(tmp_path, tofu_dir)


# The command line: one line `error: ...`, a non-zero exit, no traceback, nothing written, in seconds.
# (what the user typed, argv from (tmp, space file, a file), a pattern of the message)
CLI_CASES = [
    ("launch --out an existing file", lambda t, sp, f: ["launch", sp, "--out", f], r"is an existing file"),
    ("launch --out under a file", lambda t, sp, f: ["launch", sp, "--out", f"{f}/out"], r"a_file is a file"),
    ("run --out an existing file", lambda t, sp, f: ["run", "--out", f], r"is an existing file"),
    ("run --out under a file", lambda t, sp, f: ["run", "--out", f"{f}/run"], r"a_file is a file"),
    ("launch --storage-path under a file", lambda t, sp, f: ["launch", sp, "--out", f"{t}/o", "--storage-path", f"{f}/r"], r"--storage-path"),
    ("run --storage-path under a file", lambda t, sp, f: ["run", "--out", f"{t}/o", "--storage-path", f"{f}/r"], r"--storage-path"),
    ("launch --optuna-storage foo://bar", lambda t, sp, f: ["launch", sp, "--out", f"{t}/o", "--optuna-storage", "foo://bar"], r"unknown database kind 'foo'"),
    ("launch --mlflow-uri under a file", lambda t, sp, f: ["launch", sp, "--out", f"{t}/o", "--mlflow-uri", f"sqlite:///{f}/m.db"], r"a_file"),
    ("launch --address, a closed port", lambda t, sp, f: ["launch", sp, "--out", f"{t}/o", "--address", f"127.0.0.1:{closed_port()}"], r"nothing answers on 127.0.0.1:\d+"),
    ("run --address, a closed port", lambda t, sp, f: ["run", "--out", f"{t}/o", "--address", f"127.0.0.1:{closed_port()}", "scaling.launcher=ray_train"], r"nothing answers on 127.0.0.1:\d+"),
    ("resume --address, a closed port", lambda t, sp, f: ["resume", str(fake_sweep(t)), "--address", f"127.0.0.1:{closed_port()}"], r"nothing answers on 127.0.0.1:\d+"),
    ("run with a model directory without config.json", lambda t, sp, f: ["run", "--out", f"{t}/o", f"model.name={t}"], r"without config.json"),
    ("run method.beta1=inf", lambda t, sp, f: ["run", "--out", f"{t}/o", "method.beta1=inf"], r"beta1=inf is not a finite number"),
    ("report of a sweep.json of the wrong shape", lambda t, sp, f: (_wrong_sweep_json(t, "[1, 2]"), ["report", f"{t}/sweep"])[1], r"holds a JSON list"),
    ("export-best --out an existing directory", lambda t, sp, f: ["export-best", str(fake_sweep(t)), "--out", str(t)], r"is an existing directory"),
    ("export-best --out under a file", lambda t, sp, f: ["export-best", str(fake_sweep(t)), "--out", f"{f}/b.yaml"], r"a_file is a file"),
    ("export-best --model an existing file, --force", lambda t, sp, f: ["export-best", str(fake_sweep(t)), "--out", f"{t}/b.yaml", "--model", f, "--force"], r"--model .* is an existing file"),
]


def _wrong_sweep_json(tmp: Path, text: str) -> None:
    root = fake_sweep(tmp)
    (root / "sweep.json").write_text(text)


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("what,argv,pattern", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_cli_says_it_in_one_line(what, argv, pattern, tmp_path, capsys):
    import time

    from sweeps.cli import main

    space = _space_file(tmp_path)
    args = argv(tmp_path, str(space), str(_a_file(tmp_path)))
    before = _tree(tmp_path)
    start = time.monotonic()
    rc = main(args)
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert re.search(pattern, err), err
    assert _tree(tmp_path) == before  # checked before anything was written (no sweep.json, no lock file)
    assert elapsed < 20, f"{what} took {elapsed:.1f} s"


def test_damaged_sweep_json_advice_works(tmp_path, capsys):
    from sweeps.cli import main

    root = fake_sweep(tmp_path)
    (root / "sweep.json").write_text('{"sweep_id": "0123')  # a crash mid-write, an editor
    assert main(["report", str(root)]) == 2
    err = capsys.readouterr().err
    advice = re.search(r"restore it with `(cp \S+ \S+)`", err)
    assert advice, err
    subprocess.run(advice.group(1), shell=True, check=True)  # what the message says to do, done
    assert main(["report", str(root)]) == 0
    assert "no trial has started yet" in capsys.readouterr().out


def test_a_failed_run_is_one_line_not_a_traceback(tmp_path, cache_dir):
    """A real `unlearn-sweep run` that diverges (lr=1e9): its RunFailedError is a user error."""
    from tests.conftest import REPO, SMALL

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    out = subprocess.run([sys.executable, "-m", "sweeps", "run", "--out", str(tmp_path / "run"), f"cache_dir={cache_dir}",
                          *SMALL, "optim.lr=1e9", "scaling.launcher=local"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    assert out.stderr.rstrip().splitlines()[-1].startswith("error: DivergedError: loss is nan"), out.stderr[-2000:]


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
                msg = _shown(str(e), tmp)
        rows.append(f"| {what} | `{msg[:300]}` |")
    return "\n".join(rows)


def _shown(msg: str, tmp: str) -> str:
    msg = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", msg.replace(tmp, "<tmp>"))
    msg = re.sub(r"--port \d{5}", "--port <port>", msg)  # a closed port of the test, not an example
    return msg.replace("|", "\\|").replace("\n", " ")


def cli_catalogue_markdown() -> str:
    """The command-line table of RELIABILITY.md: what each command prints (stderr) and its exit status."""
    import contextlib
    import io
    import tempfile

    from sweeps.cli import main

    rows = ["| command | exit | what it prints |", "|---|---|---|"]
    for what, argv, _ in CLI_CASES:
        with tempfile.TemporaryDirectory() as tmp:
            t = Path(tmp)
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                rc = main(argv(t, str(_space_file(t)), str(_a_file(t))))
        rows.append(f"| {what} | {rc} | `{_shown(err.getvalue().strip(), tmp)[:300]}` |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(catalogue_markdown())
    print()
    print(cli_catalogue_markdown())
