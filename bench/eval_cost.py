"""Where evaluation time goes, per benchmark and phase, and greedy generation batched vs one by one.

    python -m bench.eval_cost --json bench/results/eval_cost.json [--muse-dir ../shared/data/muse_news]

For each setup (the embedded default on the generated benchmark; MUSE-News on the shared subset, when
the directory is there) it prepares the tiny target (cached), evaluates it through the benchmark
plug-in and prints the seconds of each evaluation phase the evaluator records (``EvalOutput.seconds``).
Then it generates greedy continuations of the same prompts (the forget questions / the verbmem
prompts) batched (``eval.batch_size``) and one by one, alternating the two ``--rounds`` times, and
reports generated tokens per second of each and their ratio (generation dominates evaluation).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from unlearn.benchmarks.tofu.options import TofuOptions
from unlearn.data.formatting import encode_prompt
from unlearn.metrics.generation import greedy_generate
from unlearn.models import load_model, load_tokenizer
from unlearn.train.config import load_run_config
from unlearn.train.prepare import prepare

REPO = Path(__file__).resolve().parents[1]


def _prompts(cfg, data, tokenizer, context: int) -> tuple[list[list[int]], int]:
    """Token-id prompts of the setup's main generation, and its max_new_tokens (MUSE: verbmem prompts
    keep their last tokens so that prompt + continuation fit the model's context, as the evaluator does)."""
    if cfg.data.benchmark == "muse":
        keep = context - 128
        return [tokenizer(r["prompt"], add_special_tokens=False)["input_ids"][-keep:] for r in data.verbmem], 128
    fmt = cfg.data.options_as(TofuOptions).prompt
    return [encode_prompt(tokenizer, r["question"], fmt) for r in data.forget_eval], cfg.eval.max_new_tokens


def _throughput(model, tokenizer, prompts, batch_size: int, new_tokens: int) -> tuple[float, int]:
    t0 = time.perf_counter()
    texts = greedy_generate(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=new_tokens,
                            device=torch.device("cpu"))
    seconds = time.perf_counter() - t0
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)  # what was kept
    return seconds, tokens


def measure(name: str, overrides: list[str], rounds: int) -> dict:
    cfg = load_run_config(None, overrides)
    bench = cfg.benchmark
    data = bench.load(cfg.data)
    prepared = prepare(cfg, data=data)
    tokenizer = load_tokenizer(prepared.target_dir)
    model = load_model(prepared.target_dir, cfg.model.torch_dtype).eval()
    t0 = time.perf_counter()
    out = bench.evaluate(model, tokenizer, data, cfg.data, cfg.eval, prepared.reference)
    total = time.perf_counter() - t0
    prompts, new_tokens = _prompts(cfg, data, tokenizer, model.config.max_position_embeddings)
    batched, single = [], []
    with torch.no_grad():
        for _ in range(rounds):
            batched.append(_throughput(model, tokenizer, prompts, cfg.eval.batch_size, new_tokens))
            single.append(_throughput(model, tokenizer, prompts, 1, new_tokens))
    tps = lambda runs: statistics.median(tok / sec for sec, tok in runs)
    row = {"setup": name, "overrides": overrides, "evaluate_s": total, "phases_s": out.seconds,
           "prompts": len(prompts), "max_new_tokens": new_tokens,
           "batched_tokens_per_s": tps(batched), "one_by_one_tokens_per_s": tps(single)}
    row["batched_over_one_by_one"] = row["batched_tokens_per_s"] / row["one_by_one_tokens_per_s"]
    print(f"{name}: evaluate {total:.1f} s; phases " + ", ".join(f"{k} {v:.1f} s" for k, v in out.seconds.items()))
    print(f"{name}: generation {len(prompts)} prompts x {new_tokens} new tokens: batched "
          f"{row['batched_tokens_per_s']:.0f} tok/s, one by one {row['one_by_one_tokens_per_s']:.0f} tok/s "
          f"({row['batched_over_one_by_one']:.1f}x)")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--muse-dir", type=Path, default=REPO / ".." / "shared" / "data" / "muse_news")
    args = ap.parse_args()
    rows = [measure("generated (embedded default)", [], args.rounds)]
    if (args.muse_dir / "MANIFEST.json").is_file():
        # search_spaces/muse.yaml's base
        muse = ["data.benchmark=muse", "data.corpus=news", f"data.path={args.muse_dir.resolve()}", "data.max_articles=8",
                "data.max_questions=8", "data.max_length=128", "prepare.epochs=24", "prepare.batch_size=8"]
        rows.append(measure("muse-news (8 articles, 8 questions)", muse, args.rounds))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"torch_threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
