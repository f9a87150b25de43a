"""evaluate() on a tiny random Llama and on a hand-built teacher-forced oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers.modeling_outputs import CausalLMOutput

from unlearn.config import from_dict
from unlearn.data.formatting import encode_qa
from unlearn.errors import ConfigError, UnknownNameError
from unlearn.benchmarks.tofu import names
from unlearn.benchmarks.config import EvalConfig
from unlearn.benchmarks.tofu.evaluate import evaluate
from unlearn.benchmarks.tofu.maths import rouge_l_recall, truth_ratio_closer_to_one
from unlearn.metrics.scoring import answer_logprob_stats

FAST = EvalConfig(batch_size=4, max_new_tokens=8, max_length=48)


class TeacherForcedOracle(torch.nn.Module):
    """Predicts every next token of its input perfectly (it peeks ahead): ES and probabilities are 1."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # gives the model a device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> CausalLMOutput:
        nxt = torch.roll(input_ids, -1, dims=1)
        return CausalLMOutput(logits=torch.nn.functional.one_hot(nxt, self.vocab_size).float() * 100.0)


def naive_avg_logp(model, tokenizer, question: str, answer: str) -> float:
    enc = encode_qa(tokenizer, question, answer, max_length=FAST.max_length)
    ids = torch.tensor([enc.input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    s, n = answer_logprob_stats(logits, torch.tensor([enc.labels]))
    return float(s[0] / n[0])


def test_all_metrics_present_and_in_range(model, tokenizer, rows):
    result = evaluate(model, tokenizer, rows, cfg=FAST, retain_truth_ratios=[0.4, 0.9, 1.3])
    membership = {*names.MIA_METRICS, names.PRIVLEAK, names.ABS_PRIVLEAK}  # the plug-in adds these
    assert list(result.metrics) == [m for m in names.ALL_METRICS if m not in membership]
    assert all(math.isfinite(v) for v in result.metrics.values())
    for split in names.SPLITS:
        assert 0 < result.metrics[names.split_metric(split, "prob")] <= 1
        assert 0 <= result.metrics[names.split_metric(split, "rouge")] <= 1
        assert 0 <= result.metrics[names.split_metric(split, "truth_ratio")] <= 1
    assert 0 <= result.metrics[names.FORGET_QUALITY] <= 1
    assert len(result.forget_truth_ratios) == len(rows["forget"])
    assert all(r > 0 for r in result.forget_truth_ratios)
    assert [len(result.generations[s]) for s in names.SPLITS] == [len(rows[s]) for s in names.SPLITS]


def test_batched_scores_match_per_sequence_reference(model, tokenizer, rows):
    result = evaluate(model, tokenizer, rows, cfg=EvalConfig(batch_size=3, max_new_tokens=4, max_length=48))
    ratios, probs = [], []
    for r in rows["forget"]:
        true = naive_avg_logp(model, tokenizer, r["question"], r["paraphrased_answer"])
        pert = np.mean([naive_avg_logp(model, tokenizer, r["question"], p) for p in r["perturbed_answer"]])
        ratios.append(math.exp(pert - true))
        probs.append(math.exp(naive_avg_logp(model, tokenizer, r["question"], r["answer"])))
    np.testing.assert_allclose(result.forget_truth_ratios, ratios, rtol=1e-4)
    assert result.metrics[names.FORGET_TRUTH_RATIO] == pytest.approx(truth_ratio_closer_to_one(ratios), rel=1e-4)
    assert result.metrics[names.FORGET_PROB] == pytest.approx(np.mean(probs), rel=1e-4)

    option = []
    for r in rows["world_facts"]:
        p_true = math.exp(naive_avg_logp(model, tokenizer, r["question"], r["answer"]))
        p_wrong = [math.exp(naive_avg_logp(model, tokenizer, r["question"], p)) for p in r["perturbed_answer"]]
        option.append(p_true / (p_true + sum(p_wrong)))
    assert result.metrics[names.WORLD_FACTS_PROB] == pytest.approx(np.mean(option), rel=1e-4)


def test_left_padded_generation_matches_one_at_a_time(model, tokenizer, rows):
    batched = evaluate(model, tokenizer, rows, cfg=FAST)
    single = evaluate(model, tokenizer, rows, cfg=EvalConfig(batch_size=1, max_new_tokens=8, max_length=48))
    assert batched.generations == single.generations
    for split in names.SPLITS:
        recall = rouge_l_recall(batched.generations[split], [r["answer"] for r in rows[split]])
        assert batched.metrics[names.split_metric(split, "rouge")] == pytest.approx(np.mean(recall))
    assert tokenizer.padding_side == "right"


@pytest.mark.parametrize("training", [True, False])
def test_mode_is_restored(model, tokenizer, rows, training):
    model.train(training)
    model.model.layers[0].eval()  # a frozen block keeps its own mode
    evaluate(model, tokenizer, {"forget": rows["forget"]}, cfg=FAST)
    assert model.training is training and model.model.layers[1].training is training
    assert model.model.layers[0].training is False


def test_teacher_forced_oracle_has_full_extraction_strength(tokenizer, rows):
    oracle = TeacherForcedOracle(len(tokenizer))
    result = evaluate(oracle, tokenizer, rows, cfg=EvalConfig(batch_size=5, rouge=False))
    assert result.metrics[names.FORGET_ES] == 1.0
    assert result.metrics[names.FORGET_ES_PARAPHRASED] == 1.0
    assert result.metrics[names.RETAIN_ES] == 1.0
    assert result.metrics[names.FORGET_PROB] == pytest.approx(1.0)
    assert result.metrics[names.FORGET_TRUTH_RATIO] == pytest.approx(1.0)  # everything equally certain
    assert result.metrics[names.RETAIN_TRUTH_RATIO] == pytest.approx(0.0, abs=1e-6)
    assert result.metrics[names.REAL_AUTHORS_PROB] == pytest.approx(1 / 4)  # answer among 3 wrong options
    assert not any(k.endswith("_rouge") for k in result.metrics)
    assert names.MODEL_UTILITY not in result.metrics and result.generations == {}


def test_subset_of_splits_and_optional_forget_quality(model, tokenizer, rows):
    result = evaluate(model, tokenizer, {"forget": rows["forget"]}, cfg=FAST)
    assert set(result.metrics) == {names.FORGET_PROB, names.FORGET_ROUGE, names.FORGET_TRUTH_RATIO, names.FORGET_ES,
                                   names.FORGET_ES_PARAPHRASED}
    del rows["forget"][1]["paraphrased_question"]  # ES after the paraphrase needs it on every row
    assert names.FORGET_ES_PARAPHRASED not in evaluate(model, tokenizer, {"forget": rows["forget"]}, cfg=FAST).metrics


def naive_es(model, tokenizer, question: str, answer: str) -> float:
    """ES of one sequence: the trailing run of argmax-correct answer tokens over the answer length."""
    enc = encode_qa(tokenizer, question, answer, max_length=FAST.max_length)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0]
    pred = logits[:-1].argmax(-1).tolist()
    target = list(enc.input_ids[1:])
    answer_pos = [i for i in range(len(target)) if enc.labels[i + 1] != -100]
    run = 0
    for i in reversed(answer_pos):
        if pred[i] != target[i]:
            break
        run += 1
    return run / len(answer_pos)


class ForgetsAfterMarker(TeacherForcedOracle):
    """The oracle, except that it predicts every token wrong in a sequence holding the ``marker`` token."""

    def __init__(self, vocab_size: int, marker: int) -> None:
        super().__init__(vocab_size)
        self.marker = marker

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> CausalLMOutput:
        nxt = torch.roll(input_ids, -1, dims=1)
        marked = (input_ids == self.marker).any(dim=1, keepdim=True)
        nxt = torch.where(marked, (nxt + 1) % self.vocab_size, nxt)
        return CausalLMOutput(logits=torch.nn.functional.one_hot(nxt, self.vocab_size).float() * 100.0)


def test_extraction_strength_after_the_paraphrased_question_matches_a_naive_reference(tokenizer, rows):
    """Only the first paraphrased question holds "city": that answer is not extracted after it."""
    marker = tokenizer.convert_tokens_to_ids("city")
    model = ForgetsAfterMarker(len(tokenizer), marker)
    forget = [{k: v for k, v in r.items() if k != "paraphrased_answer"} | {"paraphrased_answer": r["answer"]}
              for r in rows["forget"]]  # no "city" in the scored paraphrased answers
    result = evaluate(model, tokenizer, {"forget": forget}, cfg=EvalConfig(batch_size=2, rouge=False))
    para = [naive_es(model, tokenizer, r["paraphrased_question"], r["answer"]) for r in forget]
    plain = [naive_es(model, tokenizer, r["question"], r["answer"]) for r in forget]
    assert para == [0.0, 1.0, 1.0] and plain == [1.0, 1.0, 1.0]
    assert result.metrics[names.FORGET_ES_PARAPHRASED] == pytest.approx(np.mean(para))
    assert result.metrics[names.FORGET_ES] == pytest.approx(np.mean(plain))
    assert names.TABLE.tune_mode(names.FORGET_ES_PARAPHRASED) == "min"


def test_retain_statistics_of_wrong_length(model, tokenizer, rows):
    with pytest.raises(ConfigError, match=r"2 truth ratios.*3 questions"):
        evaluate(model, tokenizer, rows, cfg=FAST, retain_truth_ratios=[0.5, 0.6])


def test_bad_sets_are_rejected(model, tokenizer, rows):
    with pytest.raises(UnknownNameError, match="'retian'.*did you mean 'retain'"):
        evaluate(model, tokenizer, {"retian": rows["retain"]}, cfg=FAST)
    with pytest.raises(ConfigError, match="'forget' has no rows"):
        evaluate(model, tokenizer, {"forget": []}, cfg=FAST)
    del rows["retain"][1]["paraphrased_answer"]
    with pytest.raises(ConfigError, match=r"retain\[1\] lacks 'paraphrased_answer'"):
        evaluate(model, tokenizer, rows, cfg=FAST)
    rows["world_facts"][0]["perturbed_answer"] = []
    with pytest.raises(ConfigError, match=r"world_facts\[0\]\['perturbed_answer'\]"):
        evaluate(model, tokenizer, {"world_facts": rows["world_facts"]}, cfg=FAST)


def test_eval_config_ranges():
    assert from_dict(EvalConfig, {"batch_size": 8, "rouge": False}) == EvalConfig(batch_size=8, rouge=False)
    with pytest.raises(ConfigError, match="batch_size=0"):
        EvalConfig(batch_size=0)
    with pytest.raises(ConfigError, match="max_new_tokens=0"):
        from_dict(EvalConfig, {"max_new_tokens": 0})


@pytest.mark.gpu
def test_cuda_matches_cpu_and_bf16_is_finite(model, tokenizer, rows):
    cpu = evaluate(model, tokenizer, rows, cfg=FAST)
    gpu = evaluate(model.to("cuda"), tokenizer, rows, cfg=FAST)
    np.testing.assert_allclose(gpu.forget_truth_ratios, cpu.forget_truth_ratios, rtol=1e-2)
    assert gpu.metrics[names.RETAIN_PROB] == pytest.approx(cpu.metrics[names.RETAIN_PROB], rel=1e-2)
    half = evaluate(model.to(torch.bfloat16), tokenizer, rows, cfg=FAST)
    assert all(math.isfinite(v) for v in half.metrics.values())
