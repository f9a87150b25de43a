"""The lm-evaluation-harness evaluator on the fixture tasks (the harness's task format over local JSON Lines)
with a tiny model, against a naive re-scoring of the same choices written here; the installed harness's
own task names; unknown tasks; no global RNG state left behind."""

from __future__ import annotations

import json
import math

import pytest
import torch

from unlearn.benchmarks.muse.data import chunk_texts
from unlearn.benchmarks.wmdp import FIXTURE_DIR, names
from unlearn.benchmarks.wmdp.harness import _correct, evaluate_harness, task_index, task_plan
from unlearn.errors import ConfigError
from unlearn.models import build_tiny, train_tokenizer
from unlearn.data.batching import lm_batches
from unlearn.models.load import ModelConfig
from unlearn.train.loop import finetune_epoch
from unlearn.train.module import CausalLMWithLoss

TASKS = FIXTURE_DIR / "tasks"
SUBJECT = {"wmdp_bio": "biology", "wmdp_cyber": "cybersecurity"}
ALL_MMLU = ("mmlu_college_biology", "mmlu_virology", "mmlu_college_computer_science", "mmlu_computer_security",
            "mmlu_high_school_geography")


def rows(task: str) -> list[dict]:
    return [json.loads(x) for x in (TASKS / f"{task}.jsonl").read_text().splitlines() if x.strip()]


@pytest.fixture(scope="module")
def model_and_tokenizer():
    texts = [json.loads(x)["text"] for f in sorted(FIXTURE_DIR.glob("*.jsonl")) for x in f.read_text().splitlines()]
    tok = train_tokenizer(texts, 1024)
    model = build_tiny(ModelConfig(name="tiny-2l"), len(tok), seed=0, pad_id=tok.pad_token_id,
                       bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    # a few epochs on the fixture corpora: the model's answers then differ between questions
    examples = chunk_texts(tok, texts, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    for epoch in range(6):
        finetune_epoch(CausalLMWithLoss(model), examples, lm_batches(len(examples), 4, seed=0, epoch=epoch), opt,
                       sched, tok.pad_token_id, torch.device("cpu"))
    return model.eval(), tok


@pytest.fixture(scope="module")
def index():
    return task_index(str(TASKS))


def naive_correct(model, tok, task: str) -> list[bool]:
    """Per question: does the letter the model finds most likely after the prompt equal the answer? The
    prompt is the task's description + question + lettered choices + "Answer:", each letter scored as the
    tokens " X" add to the prompt's tokens (the tokenizer's own special tokens, as the harness encodes)."""
    subject = SUBJECT.get(task, task.removeprefix("mmlu_").replace("_", " "))
    out = []
    for r in rows(task):
        context = (f"The following are multiple choice questions (with answers) about {subject}.\n\n"
                   f"{r['question'].strip()}\n" + "".join(f"{l}. {c}\n" for l, c in zip("ABCD", r["choices"]))
                   + "Answer:")
        ctx = tok.encode(context)
        scores = []
        for letter in "ABCD":
            whole = tok.encode(context + " " + letter)
            cont = whole[len(ctx):]
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.tensor([whole[:-1]])).logits[0].double(), -1)
            scores.append(sum(float(logp[len(ctx) - 1 + i, t]) for i, t in enumerate(cont)))
        out.append(max(range(4), key=lambda i: scores[i]) == r["answer"])
    return out


def mean_and_stderr(hits: list[bool]) -> tuple[float, float]:
    n, p = len(hits), sum(hits) / len(hits)
    return p, math.sqrt(p * (1 - p) * n / (n - 1) / n)  # sample standard deviation / sqrt(n)


def test_accuracies_equal_a_naive_rescoring(model_and_tokenizer, index):
    model, tok = model_and_tokenizer
    state = torch.random.get_rng_state()
    res = evaluate_harness(model, tok, index, task_plan("full"), batch_size=16)
    full = res.metrics
    assert torch.equal(torch.random.get_rng_state(), state)  # simple_evaluate's seeding is undone
    assert set(full) == set(names.TABLE.names)
    hits = {t: naive_correct(model, tok, t) for t in ("wmdp_bio", "wmdp_cyber", *ALL_MMLU)}
    for metric, task in ((names.WMDP_BIO_ACC, "wmdp_bio"), (names.WMDP_CYBER_ACC, "wmdp_cyber")):
        acc, err = mean_and_stderr(hits[task])
        assert full[metric] == pytest.approx(acc, abs=1e-12)
        assert full[names.stderr_name(metric)] == pytest.approx(err, rel=1e-9)
    pooled = [h for t in ALL_MMLU for h in hits[t]]
    assert full[names.MMLU_ACC] == pytest.approx(sum(pooled) / len(pooled), abs=1e-12)  # size-weighted group
    assert len({round(sum(hits[t]) / len(hits[t]), 6) for t in hits}) > 1  # the model does tell questions apart
    # per question: the naive rescoring's verdicts, in file order; the group's subjects in name order
    assert set(res.per_item) == set(names.PER_ITEM)
    assert res.per_item[names.WMDP_BIO_ACC] == [float(h) for h in hits["wmdp_bio"]]
    assert res.per_item[names.WMDP_CYBER_ACC] == [float(h) for h in hits["wmdp_cyber"]]
    assert res.per_item[names.MMLU_ACC] == [float(h) for t in sorted(ALL_MMLU) for h in hits[t]]
    for metric, items in res.per_item.items():
        assert full[metric] == pytest.approx(sum(items) / len(items), abs=1e-12)
    sub = evaluate_harness(model, tok, index, task_plan("subset"), batch_size=16, limit=6)
    subset = sub.metrics
    capped = [h for t in names.MMLU_SUBSET for h in hits[t][:6]]
    assert subset[names.MMLU_ACC] == pytest.approx(sum(capped) / len(capped), abs=1e-12)
    assert subset[names.WMDP_CYBER_ACC] == pytest.approx(sum(hits["wmdp_cyber"][:6]) / 6, abs=1e-12)
    assert sub.per_item[names.MMLU_ACC] == [float(h) for t in sorted(names.MMLU_SUBSET) for h in hits[t][:6]]
    assert model.training is False


def test_per_item_unfolds_nested_groups_in_name_order():
    """The installed harness's ``mmlu`` is a group of groups (``mmlu_stem``...) of subjects: its questions are
    every subject's, subjects in name order, each in ``doc_id`` order; other filters' samples left out."""
    def sample(doc_id: int, acc: float, filter_: str = "none") -> dict:
        return {"doc_id": doc_id, "filter": filter_, "acc": acc}

    results = {"group_subtasks": {"mmlu": ["mmlu_stem", "mmlu_other"], "mmlu_stem": ["mmlu_b", "mmlu_a"],
                                  "mmlu_other": ["mmlu_c"]},
               "samples": {"mmlu_a": [sample(1, 0.0), sample(0, 1.0), sample(0, 0.0, "other")],
                           "mmlu_b": [sample(0, 0.0)], "mmlu_c": [sample(0, 1.0), sample(1, 1.0)]}}
    assert _correct(results, ("mmlu",)) == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert _correct(results, ("mmlu_c", "mmlu_b")) == [0.0, 1.0, 1.0]


def test_unknown_task_names_the_task_and_close_ones(index):
    with pytest.raises(ConfigError, match=r"harness task 'wmdp_cyberr' is not known to data.tasks_path .*"
                                          r"close: wmdp_cyber"):
        index.check(("wmdp_bio", "wmdp_cyberr"))


def test_the_installed_harness_knows_the_real_tasks():
    real = task_index(None)
    real.check((*names.WMDP_TASKS[names.WMDP_BIO_ACC], *names.WMDP_TASKS[names.WMDP_CYBER_ACC], *names.MMLU_FULL,
                *names.MMLU_SUBSET))
    assert "installed harness (lm-eval 0.4" in real.source
    with pytest.raises(ConfigError, match=r"'wmdp_chemistry' is not known to the installed harness.*wmdp_chem"):
        real.check(("wmdp_chemistry",))


def test_request_bars_follow_tqdms_switch(model_and_tokenizer, index, monkeypatch, capsys):
    """The harness's request bars set ``disable=False`` themselves; TQDM_DISABLE (what unlearn-sweep sets
    without --verbose) turns them off all the same, and the metrics do not change."""
    model, tok = model_and_tokenizer
    plan = {names.WMDP_CYBER_ACC: ("wmdp_cyber",)}
    shown = evaluate_harness(model, tok, index, plan, batch_size=16, limit=4)
    assert "Running loglikelihood requests" in capsys.readouterr().err
    monkeypatch.setenv("TQDM_DISABLE", "1")
    quiet = evaluate_harness(model, tok, index, plan, batch_size=16, limit=4)
    err = capsys.readouterr().err
    assert "Running loglikelihood requests" not in err and "Tokenizing inputs" not in err, err[-500:]
    assert quiet == shown
