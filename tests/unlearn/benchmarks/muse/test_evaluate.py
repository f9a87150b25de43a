"""MUSE's evaluator: each metric against a reference written here (ROUGE-L F1 by an LCS, the knowmem
prompt and stop strings on hand strings, min-k% / AUC / privleak and extraction strength from the
model's own logits), a hand-wired model whose greedy outputs are known, and real MUSE-News rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from sklearn.metrics import roc_auc_score

from tests.conftest import MUSE_DIR
from unlearn.benchmarks.muse import names
from unlearn.benchmarks.muse.data import MuseSets, load_muse
from unlearn.benchmarks.muse.evaluate import (
    STOP_STRINGS,
    MuseEvalConfig,
    cut_at_stops,
    evaluate_muse,
    generate,
    knowmem_prompt,
    retain_auc_from_file,
    rouge_l_f1,
    save_retain_auc,
    text_sequences,
    verbmem_sequences,
)
from unlearn.errors import ConfigError
from unlearn.metrics.mia import delong_interval
from unlearn.models import train_tokenizer



def _tiny_llama(tok, *, seed: int = 0, positions: int = 4096) -> transformers.LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                   num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=positions,
                                   pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                   eos_token_id=tok.eos_token_id)
    return transformers.LlamaForCausalLM(cfg).eval()


# --- ROUGE-L F1 against an LCS written here -------------------------------------------------------------

def _lcs(a: list[str], b: list[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
    return table[-1][-1]


def _ref_rouge_l_f1(gen: str, ref: str) -> float:
    """ROUGE-L F1 over lower-cased alphanumeric words (no stemming: the test words are <= 3 letters,
    which rouge_score's stemmer leaves as they are)."""
    g, r = (re.sub(r"[^a-z0-9]+", " ", s.lower()).split() for s in (gen, ref))
    n = _lcs(g, r)
    if n == 0:
        return 0.0
    p, rec = n / len(g), n / len(r)
    return 2 * p * rec / (p + rec)


@pytest.mark.parametrize(("gen", "ref"), [
    ("the cat sat on the mat", "the cat sat on the mat"),
    ("a cat sat on a mat", "the cat sat on the mat"),
    ("The CAT, sat!", "the cat sat on the mat"),
    ("mat the on sat cat", "the cat sat on the mat"),
    ("dog ran off", "the cat sat on the mat"),
    ("", "the cat sat"),
    ("c d\na b", "a b\nc d"),  # rougeL: one LCS over the whole text (rougeLsum would give 1)
])
def test_rouge_l_f1_is_the_lcs_f_measure(gen, ref):
    assert rouge_l_f1([gen], [ref]) == pytest.approx([_ref_rouge_l_f1(gen, ref)], abs=1e-12)


def test_rouge_uses_the_stemmer():
    # open-unlearning's scorer has use_stemmer=True: dogs/dog and running/runs share their stems
    assert rouge_l_f1(["dogs running"], ["dog runs"]) == [1.0]
    with pytest.raises(ConfigError, match="2 generations but 1 references"):
        rouge_l_f1(["a", "b"], ["a"])


# --- knowmem prompt and stop strings ----------------------------------------------------------------------

def test_knowmem_prompt_as_open_unlearning_builds_it():
    icl = [{"question": "Q1?", "answer": "A1"}, {"question": "Q2?", "answer": "A2"}]
    assert knowmem_prompt("Who?", icl) == ("Question: Q1?\nAnswer: A1\n\nQuestion: Q2?\nAnswer: A2\n\n"
                                           "Question: Who?\nAnswer: ")
    assert knowmem_prompt("Who?", []) == "Question: Who?\nAnswer: "


@pytest.mark.parametrize(("raw", "cut"), [
    (" Paris\n\nQuestion: Where?", "Paris"),
    ("Paris\nQuestion: Where?", "Paris"),
    ("Paris Question: Where?", "Paris"),
    ("Paris, France.\nIt is", "Paris, France.\nIt is"),  # one newline is no stop
    ("Paris</s>junk", "Paris"),
    ("  Question: x", ""),
])
def test_cut_at_stop_strings(raw, cut):
    assert STOP_STRINGS == ("\n\n", "\nQuestion", "Question:")
    assert cut_at_stops(raw, ["</s>", *STOP_STRINGS]) == cut


# --- a hand-wired model: greedy outputs known, so each metric's value is known -------------------------

WORDS = "one two three four five six seven eight nine ten Paris Rome London who what"


@pytest.fixture(scope="module")
def hand_tok():
    lines = [WORDS, "six seven eight nine ten", "Paris\n\nQuestion: who\nAnswer: Paris\n\n",
             "Question: what\nAnswer: Rome\n\n", "London Rome Paris one two three"]
    return train_tokenizer(lines * 40, 1000)


def _one(tok, text: str) -> int:
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, (text, tok.convert_ids_to_tokens(ids))
    return ids[0]


def _chain_model(tok, succ: dict[int, int]) -> transformers.LlamaForCausalLM:
    """A Llama whose next token depends only on the current one: ``succ[a]`` follows ``a``.

    Attention and MLP outputs are zeroed, so the last hidden state is the token's embedding; each chain
    token gets its own basis vector and the LM head row of its successor that same vector.
    """
    model = _tiny_llama(tok)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.lm_head.weight.zero_()
        for j, a in enumerate(sorted(succ)):
            e = torch.zeros(model.config.hidden_size)
            e[j] = 1.0
            model.model.embed_tokens.weight[a] = e
            model.lm_head.weight[succ[a]] += e
    return model


@pytest.fixture(scope="module")
def chain(hand_tok):
    t = lambda s: _one(hand_tok, s)  # noqa: E731
    eos = hand_tok.eos_token_id
    succ = {
        # verbmem row 0: "one two" -> " three four five", then EOS
        t(" two"): t(" three"), t(" three"): t(" four"), t(" four"): t(" five"), t(" five"): eos,
        # verbmem row 1: "six" -> " seven", then " ten" (the gt says " eight nine ten"), then EOS
        t("six"): t(" seven"), t(" seven"): t(" ten"), t(" eight"): t(" nine"), t(" nine"): t(" ten"), t(" ten"): eos,
        # every knowmem prompt ends with "Answer: " -> its last token " ": "Paris", then newlines forever
        t(" "): t("Paris"), t("Paris"): t("\n"), t("\n"): t("\n"),
    }
    return _chain_model(hand_tok, succ)


@pytest.fixture(scope="module")
def hand_sets() -> MuseSets:
    icl = ({"question": "what", "answer": "Rome"},)
    return MuseSets(
        forget_texts=("one two",), retain_texts=("six",),
        verbmem=({"prompt": "one two", "gt": "three four five"}, {"prompt": "six", "gt": "seven eight nine ten"}),
        knowmem_forget=({"question": "who", "answer": "Paris"},), knowmem_forget_icl=icl,
        knowmem_retain=({"question": "who", "answer": "London"},), knowmem_retain_icl=icl,
        privleak_forget=("one two three four", "two three four five"),
        privleak_holdout=("Rome London Paris who", "seven Rome nine what"),
    )


def test_hand_wired_metrics(chain, hand_tok, hand_sets):
    res = evaluate_muse(chain, hand_tok, hand_sets, MuseEvalConfig(batch_size=2), retain_auc=0.5)
    assert res.generations == {"forget_verbmem": ["three four five", "seven ten"],
                               "forget_knowmem": ["Paris"], "retain_knowmem": ["Paris"]}
    m = res.metrics
    # ROUGE-L F1: 1 and 2/3 ("seven ten" vs "seven eight nine ten": LCS 2, P 1, R 1/2)
    assert m[names.FORGET_VERBMEM_ROUGE] == pytest.approx((1 + 2 / 3) / 2)
    assert m[names.FORGET_KNOWMEM_ROUGE] == 1.0 and m[names.RETAIN_KNOWMEM_ROUGE] == 0.0
    # ES on the gt tokens but the last: row 0 all right (1); row 1 [seven ok, eight wrong, nine ok] -> 1/3.
    # Scoring the last token too would give (1 + 2/4) / 2.
    assert m[names.FORGET_ES] == pytest.approx((1 + 1 / 3) / 2)
    assert m[names.PRIVLEAK] == pytest.approx(((1 - res.privleak_auc) - 0.5) / 0.5 * 100, abs=1e-6)
    assert list(m) == [n for n in names.TABLE.names if n in m]  # the table's order
    # per item: the values each metric averages, and the AUC's inputs, in the sets' order
    assert list(res.per_item) == list(names.PER_ITEM)
    assert res.per_item[names.FORGET_VERBMEM_ROUGE] == pytest.approx([1, 2 / 3])
    assert res.per_item[names.FORGET_ES] == pytest.approx([1, 1 / 3])
    assert res.per_item[names.FORGET_KNOWMEM_ROUGE] == [1.0] and res.per_item[names.RETAIN_KNOWMEM_ROUGE] == [0.0]
    assert len(res.per_item[names.PRIVLEAK_FORGET_MIN_K]) == len(res.per_item[names.PRIVLEAK_HOLDOUT_MIN_K]) == 2


def test_context_clipping_keeps_the_last_tokens(chain, hand_tok, hand_sets):
    full = evaluate_muse(chain, hand_tok, hand_sets, MuseEvalConfig(batch_size=2), retain_auc=0.5)
    clipped = evaluate_muse(chain, hand_tok, hand_sets, MuseEvalConfig(batch_size=2, context_length=6), retain_auc=0.5)
    assert clipped.generations == full.generations
    for k in (names.FORGET_VERBMEM_ROUGE, names.FORGET_KNOWMEM_ROUGE, names.FORGET_ES):
        assert clipped.metrics[k] == full.metrics[k]
    seqs = text_sequences(hand_tok, hand_sets.privleak_holdout, 2048, 3)
    assert [len(s.input_ids) for s in seqs] == [3, 3]
    for s in verbmem_sequences(hand_tok, hand_sets.verbmem, 2048, 4):
        assert len(s.input_ids) <= 4 and s.labels[: s.prompt_len] == (-100,) * s.prompt_len


def test_generation_stops_at_stop_strings(chain, hand_tok):
    prompt = hand_tok(knowmem_prompt("who", []), add_special_tokens=True)["input_ids"]
    calls = []
    hook = chain.register_forward_hook(lambda *args: calls.append(1))
    try:
        stopped = generate(chain, hand_tok, [prompt], batch_size=1, max_new_tokens=32, stops=STOP_STRINGS,
                           device=torch.device("cpu"))
        n_stopped = len(calls)
        calls.clear()
        full = generate(chain, hand_tok, [prompt], batch_size=1, max_new_tokens=32, stops=(),
                        device=torch.device("cpu"))
    finally:
        hook.remove()
    assert stopped == ["Paris"] and full == ["Paris"]  # "Paris\n\n\n..." cut at the blank line / stripped
    assert n_stopped <= 3 < len(calls) == 32  # "Paris", "\n", "\n" and done


def test_no_generation_and_no_retain_auc(chain, hand_tok, hand_sets):
    res = evaluate_muse(chain, hand_tok, hand_sets, MuseEvalConfig(generate=False), retain_auc=None)
    intervals = {f(n) for n in names.MIA_METRICS for f in (names.ci_low, names.ci_high)}  # privleak's needs retain_auc
    assert set(res.metrics) == {names.PRIVLEAK_AUC, names.FORGET_ES, *names.MIA_METRICS, *intervals}
    assert res.generations == {}
    assert set(res.per_item) == {names.FORGET_ES, names.PRIVLEAK_FORGET_MIN_K, names.PRIVLEAK_HOLDOUT_MIN_K}
    assert res.metrics[names.PRIVLEAK_AUC] == res.privleak_auc


# --- real MUSE-News rows with a tiny random Llama ---------------------------------------------------------

@pytest.fixture(scope="module")
def real():
    if not (MUSE_DIR / "MANIFEST.json").is_file():
        pytest.fail(f"no local MUSE-News copy at {MUSE_DIR}")
    sets = load_muse("news", str(MUSE_DIR), max_articles=8, max_questions=8, max_privleak=8)
    texts = [*sets.forget_texts, *sets.privleak_forget, *sets.privleak_holdout,
             *(f"{r['prompt']} {r['gt']}" for r in sets.verbmem),
             *(knowmem_prompt(r["question"], []) + r["answer"] for r in (*sets.knowmem_forget, *sets.knowmem_retain))]
    tok = train_tokenizer(texts, 512)
    return sets, tok, _tiny_llama(tok, seed=1)


def _ref_mink(model, ids: list[int], k: float) -> float:
    """min-k%: minus the mean of the lowest k of the token log-probs, the last scored token left out."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
    tok_logp = np.array([logp[t - 1, ids[t]].item() for t in range(1, len(ids))])[:-1]
    n = max(1, int(len(tok_logp) * k))
    return -float(np.sort(tok_logp)[:n].mean())


def _ref_es(model, prompt: list[int], gt: list[int]) -> float:
    """1 - k/L over the gt tokens but the last, k the shortest prefix after which argmax is always right."""
    ids = prompt + gt
    with torch.no_grad():
        pred = model(torch.tensor([ids])).logits[0].argmax(-1).tolist()
    right = [pred[t - 1] == ids[t] for t in range(len(prompt), len(ids))][:-1]
    wrong = [i for i, ok in enumerate(right) if not ok]
    k = wrong[-1] + 1 if wrong else 0
    return (len(right) - k) / len(right)


def test_real_rows_against_reference_formulas(real):
    sets, tok, model = real
    cfg = MuseEvalConfig(batch_size=8, max_length=256)
    res = evaluate_muse(model, tok, sets, cfg, retain_auc=0.37)
    assert set(res.metrics) == set(names.TABLE.names) - {names.ABS_PRIVLEAK}
    assert {k: len(v) for k, v in res.generations.items()} == {"forget_verbmem": 8, "forget_knowmem": 8,
                                                              "retain_knowmem": 8}
    for k in (names.FORGET_VERBMEM_ROUGE, names.FORGET_KNOWMEM_ROUGE, names.RETAIN_KNOWMEM_ROUGE, names.FORGET_ES):
        assert 0.0 <= res.metrics[k] <= 1.0
    assert res.metrics[names.FORGET_VERBMEM_ROUGE] == pytest.approx(
        np.mean(rouge_l_f1(res.generations["forget_verbmem"], [r["gt"] for r in sets.verbmem])))
    # each ROUGE / ES metric is the mean of its per-item record, one value per row of its set
    for k, rows in ((names.FORGET_VERBMEM_ROUGE, sets.verbmem), (names.FORGET_ES, sets.verbmem),
                    (names.FORGET_KNOWMEM_ROUGE, sets.knowmem_forget),
                    (names.RETAIN_KNOWMEM_ROUGE, sets.knowmem_retain)):
        assert len(res.per_item[k]) == len(rows)
        assert res.metrics[k] == pytest.approx(np.mean(res.per_item[k]), abs=1e-15)

    # privleak: min-k% (k = 0.4) scores from the logits, AUC = P(holdout score > forget score)
    forget = [_ref_mink(model, tok(t)["input_ids"][:256], 0.4) for t in sets.privleak_forget]
    holdout = [_ref_mink(model, tok(t)["input_ids"][:256], 0.4) for t in sets.privleak_holdout]
    pairs = [(h > f) + 0.5 * (h == f) for f in forget for h in holdout]
    near = sum(abs(h - f) < 1e-5 for f in forget for h in holdout)  # pairs batching's rounding could swap
    assert abs(res.privleak_auc - np.mean(pairs)) <= near / len(pairs) + 1e-12
    # the per-text min-k% scores are the AUC's inputs: sklearn's AUC of them (forget 0, holdout 1) is privleak_auc
    item_forget, item_holdout = res.per_item[names.PRIVLEAK_FORGET_MIN_K], res.per_item[names.PRIVLEAK_HOLDOUT_MIN_K]
    assert item_forget == pytest.approx(forget, abs=1e-5) and item_holdout == pytest.approx(holdout, abs=1e-5)
    labels = [0] * len(item_forget) + [1] * len(item_holdout)
    assert roc_auc_score(labels, [*item_forget, *item_holdout]) == res.privleak_auc
    assert res.metrics[names.PRIVLEAK_AUC] == res.privleak_auc
    ref_privleak = ((1 - res.privleak_auc) - (1 - 0.37)) / (1 - 0.37) * 100
    assert res.metrics[names.PRIVLEAK] == pytest.approx(ref_privleak, rel=1e-9)
    # each AUC comes with its DeLong interval around it; privleak's is the min-k% one mapped through privleak
    lo, hi = delong_interval(item_forget, item_holdout)
    assert (res.metrics[names.ci_low(names.MIA_MIN_K)], res.metrics[names.ci_high(names.MIA_MIN_K)]) == (lo, hi)
    for m in names.MIA_METRICS:
        assert res.metrics[names.ci_low(m)] <= res.metrics[m] <= res.metrics[names.ci_high(m)]
    assert res.metrics[names.ci_low(names.PRIVLEAK)] == pytest.approx(((1 - hi) - 0.63) / 0.63 * 100, rel=1e-9)
    assert res.metrics[names.ci_high(names.PRIVLEAK)] == pytest.approx(((1 - lo) - 0.63) / 0.63 * 100, rel=1e-9)

    # ES: each verbmem gt teacher-forced after "prompt + ' ' + gt"'s prompt tokens
    es = []
    for r in sets.verbmem:
        full, p = tok(f"{r['prompt']} {r['gt']}")["input_ids"], len(tok(r["prompt"])["input_ids"])
        es.append(_ref_es(model, full[:p], full[p : p + 256]))
    assert res.metrics[names.FORGET_ES] == pytest.approx(np.mean(es), abs=1e-9)
    assert set(res.seconds) == {"score", "generate"}


def test_model_mode_is_restored(real):
    sets, tok, model = real
    model.train()
    evaluate_muse(model, tok, sets, MuseEvalConfig(max_length=32, generate=False), retain_auc=None)
    assert model.training
    model.eval()


# --- config and retain statistics file ---------------------------------------------------------------------

@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"batch_size": 0}, r"batch_size=0.*\[1"),
    ({"k": 0.0}, r"k=0.0.*\(0.0, 1.0\]"),
    ({"k": 1.5}, r"k=1.5"),
    ({"verbmem_max_new_tokens": 0}, "verbmem_max_new_tokens=0"),
    ({"knowmem_max_new_tokens": -1}, "knowmem_max_new_tokens=-1"),
    ({"max_length": 1}, "max_length=1"),
    ({"context_length": 1}, "context_length=1"),
])
def test_eval_config_ranges(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        MuseEvalConfig(**kwargs)
    assert MuseEvalConfig() == MuseEvalConfig(batch_size=8, verbmem_max_new_tokens=128, knowmem_max_new_tokens=32,
                                              max_length=2048, k=0.4)


@pytest.mark.parametrize("auc", [1.0, -0.1, float("nan"), True])
def test_bad_retain_auc_fails_before_the_model_runs(chain, hand_tok, hand_sets, auc):
    with pytest.raises(ConfigError, match="retain_auc"):
        evaluate_muse(chain, hand_tok, hand_sets, MuseEvalConfig(), retain_auc=auc)


def test_retain_auc_file_formats(tmp_path: Path):
    ou = tmp_path / "MUSE_EVAL.json"  # open-unlearning's retain-model log: privleak.yaml reads mia_min_k
    ou.write_text(json.dumps({"mia_min_k": {"agg_value": 0.2731, "value_by_index": {"0": {"score": 1.2}}},
                              "privleak": {"agg_value": 0.0}, "forget_knowmem_ROUGE": {"agg_value": 0.3}}))
    assert retain_auc_from_file(ou) == 0.2731
    ours = tmp_path / "stats" / "retain.json"
    save_retain_auc(ours, 0.61)
    assert json.loads(ours.read_text()) == {"privleak_auc": 0.61}
    assert retain_auc_from_file(str(ours)) == 0.61


@pytest.mark.parametrize(("content", "pattern"), [
    (None, r"does not exist"),
    ("{not json", r"is not JSON"),
    (json.dumps({"forget_quality": 0.3}), r"holds no retain AUC \(found \['forget_quality'\]\)"),
    (json.dumps([0.5]), r"holds no retain AUC \(found list\)"),
    (json.dumps({"privleak_auc": 1.0}), r"privleak_auc=1.0 is not an AUC in \[0, 1\)"),
    (json.dumps({"mia_min_k": {"agg_value": "0.4"}}), r"mia_min_k.agg_value='0.4' is not an AUC"),
])
def test_bad_retain_auc_file(tmp_path, content, pattern):
    path = tmp_path / "MUSE_EVAL.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=pattern) as err:
        retain_auc_from_file(path)
    assert str(path) in str(err.value) and '"mia_min_k": {"agg_value": AUC' in str(err.value)
    with pytest.raises(ConfigError, match="retain_auc=1.5"):
        save_retain_auc(tmp_path / "x.json", 1.5)
