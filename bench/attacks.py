"""The attacks on unlearned models of the embedded default (generated benchmark, tiny Llama), and their cost.

    python -m bench.attacks methods --seeds 0 1 2 --json bench/results/attacks_methods.json
    python -m bench.attacks methods --seeds 0 --set optim.lr=1e-4 --json bench/results/attacks_methods_lr1e-4.json
    python -m bench.attacks cost --rounds 3 --json bench/results/attacks_cost.json
    python -m bench.attacks cost --rounds 2 --utility --json bench/results/attacks_cost_utility.json
    unlearn-sweep launch robust budget.num_samples=12 --out sweeps_out/robust12
    python -m bench.attacks picks --sweep sweeps_out/robust12 --seeds 100 101 102 --json bench/results/attacks_picks.json

``methods``: the paper-default SatImp point (SatImp-GD, beta1=5, beta2=0.1, alpha=1), GA and NPO
(beta 0.1, alpha 1), each at the embedded default's optimiser (8 epochs, lr 2e-3), one run per seed with
both attacks (``ATTACKS``); and the prepared retain and target models attacked the same way (the attacks
do not depend on the run's seed): what "forgotten" and "known" look like. Prints the forget metrics plain /
4-bit / 8-bit / after relearning, each method's mean over seeds with its 95 % t interval. ``--set KEY=VALUE``
(repeatable): an override of every method's runs, e.g. a smaller learning rate.

``picks``: one finished sweep of the robust space (``search_spaces/robust.yaml``: every trial attacked), chosen
from twice: the plain choice (least ``forget_w1`` among the trials that keep the utility bound) and the robust
one (least ``relearn_forget_w1`` among the trials that keep every bound of the space, the 4-bit one too); each
choice re-run on ``--seeds`` (seeds the sweep did not use) with both attacks and summarised as ``methods`` is.
The two choices are made on the same trials, so they differ only by the criterion.

``cost``: the same run (the paper-default point, seed 0) without and with both attacks, alternated
``--rounds`` times in this process (``run_local``: one CPU worker, no Ray start-up, as a sweep trial's
local launcher), the median wall seconds of each and their ratio. ``--utility``: the attacks report the
utility metrics too (``eval.quant.utility`` / ``eval.relearn.utility``: each attack a whole evaluation).

Every figure is saved with the commit and the resolved config. Set OMP_NUM_THREADS=1 on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from bench.replicate_table import commit
from sweeps.record import interval
from unlearn.attacks.evaluate import check_attacks, evaluate_attacks
from unlearn.config import to_dict
from unlearn.models import load_model, load_tokenizer
from unlearn.train.config import RunConfig, load_run_config
from unlearn.train.prepare import prepare
from unlearn.train.run import run_local

ATTACKS = ["eval.quant.bits=[4,8]", "eval.relearn.fraction=0.25", "eval.relearn.steps=10", "eval.relearn.lr=1e-3"]
METHODS: dict[str, list[str]] = {
    "satimp (paper default)": [],
    "ga": ["method.weighting=uniform", "method.objective=ga"],
    "npo": ["method.weighting=uniform", "method.objective=npo", "method.npo_beta=0.1"],
}
STATS = ("forget_quality", "forget_w1", "forget_prob", "forget_rouge", "forget_truth_ratio", "model_utility")
PREFIXES = ("", "q4_", "q8_", "relearn_")


def _config(cache: str, *overrides: str) -> RunConfig:
    return load_run_config(None, [f"cache_dir={cache}", *overrides])


def _row(metrics: dict[str, float]) -> dict[str, float]:
    return {p + s: metrics[p + s] for p in PREFIXES for s in STATS if p + s in metrics}


def attacked_references(cfg: RunConfig) -> dict[str, dict[str, float]]:
    """The prepared retain and target models, attacked as the runs are (plain metrics from prepare)."""
    prepared = prepare(cfg, log=lambda s: None)
    bench = cfg.benchmark
    data = bench.load(cfg.data)
    split = check_attacks(bench, data, cfg.eval)
    info = json.loads((prepared.root / "prepared.json").read_text())["metrics"]
    out = {}
    for name in ("retain", "target"):
        model_dir = prepared.root / name if name == "retain" else prepared.target_dir
        lm = load_model(model_dir, cfg.model.torch_dtype).eval()
        attacked = evaluate_attacks(lm, load_tokenizer(model_dir), bench, data, cfg.data, cfg.eval,
                                    prepared.reference, split)
        out[name] = _row({**info[name], **attacked.metrics})
    return out


def methods(seeds: list[int], cache: str, extra: list[str]) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {}
    configs = {}
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        for name, overrides in METHODS.items():
            for seed in seeds:
                cfg = _config(cache, *overrides, *ATTACKS, *extra, f"seed={seed}")
                configs[name] = to_dict(cfg)
                _run(cfg, Path(tmp) / f"{name.split()[0]}_{seed}", runs, name, seed, ("forget_prob", "forget_quality"))
    summary, refs = _summarise(runs, cache)
    return {"seeds": seeds, "attacks": ATTACKS, "methods": METHODS, "set": extra, "configs": configs, "runs": runs,
            "summary": summary, "references": refs}


def _run(cfg: RunConfig, out: Path, runs: dict[str, list[dict[str, float]]], name: str, seed: int,
         shown: tuple[str, ...]) -> None:
    """One attacked run of ``name`` at ``seed``: its row appended to ``runs[name]``, the ``shown`` stats printed."""
    row = _row(run_local(cfg, out, log=lambda s: None).metrics)
    runs.setdefault(name, []).append(row)
    print(f"{name} seed {seed}: " + " ".join(f"{k}={v:.3g}" for k, v in row.items() if k.endswith(shown)), flush=True)


def _summarise(runs: dict[str, list[dict[str, float]]], cache: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each name's mean over seeds with its 95 % t interval, the attacked references, printed as one table."""
    refs = attacked_references(_config(cache, *ATTACKS))
    summary = {name: {k: {"mean": statistics.fmean(r[k] for r in rows),
                          "ci95": interval([r[k] for r in rows], "mean"), "values": [r[k] for r in rows]}
                      for k in rows[0]} for name, rows in runs.items()}
    _print_table(summary, refs)
    return summary, refs


def _print_table(summary: dict[str, dict[str, Any]], refs: dict[str, dict[str, float]]) -> None:
    for stat in ("forget_prob", "forget_quality", "forget_rouge", "forget_w1", "model_utility"):
        print(f"\n{stat}: mean over seeds [95 % t interval]   plain | 4-bit | 8-bit | after relearning")
        for name, s in summary.items():
            cells = []
            for p in PREFIXES:
                v = s.get(p + stat)
                ci = v["ci95"] if v else None
                cells.append("-" if v is None else f"{v['mean']:.3g}" + (f" [{ci[0]:.3g}, {ci[1]:.3g}]" if ci else ""))
            print(f"  {name:<24}" + " | ".join(cells))
        for name, r in refs.items():
            print(f"  {name + ' model':<24}" + " | ".join(f"{r[p + stat]:.3g}" if p + stat in r else "-"
                                                        for p in PREFIXES))


def picks(sweep: Path, seeds: list[int], cache: str) -> dict[str, Any]:
    import yaml

    from sweeps.report.trials import collect_trials, load_bounds

    bounds = load_bounds(sweep)
    done = [t for t in collect_trials(sweep) if t.status == "FINISHED" and t.config is not None]
    if not done:
        raise SystemExit(f"--sweep {sweep}: no finished trial; valid: a robust sweep's directory")
    utility = [b for b in bounds if b.metric == "model_utility"]

    def best(metric: str, keep) -> Any:  # the least ``metric`` among the trials that keep every bound of ``keep``
        return min((t for t in done if all(b.violation(t.metrics) <= 0 for b in keep)), key=lambda t: t.metrics[metric])

    chosen = {"plain (forget_w1, utility bound)": best("forget_w1", utility),
              "robust (relearn_forget_w1, every bound)": best("relearn_forget_w1", bounds)}
    for name, t in chosen.items():
        print(f"{name}: trial {t.trial_id} {t.params}", flush=True)
    runs: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        for name, t in chosen.items():
            path = Path(tmp) / f"{t.trial_id}.yaml"
            path.write_text(yaml.safe_dump({k: v for k, v in t.config.items() if k != "seed"}))
            for seed in seeds:
                cfg = load_run_config(path, [f"cache_dir={cache}", *ATTACKS, f"seed={seed}"])
                _run(cfg, Path(tmp) / f"{t.trial_id}_{seed}", runs, name, seed, ("forget_w1", "model_utility"))
    summary, refs = _summarise(runs, cache)
    return {"sweep": str(sweep), "bounds": [b.describe() for b in bounds], "seeds": seeds, "attacks": ATTACKS,
            "chosen": {n: {"trial": t.trial_id, "params": t.params, "sweep_metrics": _row(t.metrics),
                           "config": t.config} for n, t in chosen.items()},
            "trials": len(done), "runs": runs, "summary": summary, "references": refs}


def cost(rounds: int, cache: str, utility: bool) -> dict[str, Any]:
    extra = ["eval.quant.utility=true", "eval.relearn.utility=true"] if utility else []
    plain, attacked = _config(cache), _config(cache, *ATTACKS, *extra)
    prepare(plain, log=lambda s: None)  # cached before timing
    times: dict[str, list[float]] = {"plain": [], "attacked": []}
    seconds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-attacks-") as tmp:
        for r in range(rounds):
            for name, cfg in (("plain", plain), ("attacked", attacked)):
                t0 = time.perf_counter()
                res = run_local(cfg, Path(tmp) / f"{name}_{r}", log=lambda s: None)
                times[name].append(time.perf_counter() - t0)
                if name == "attacked":
                    seconds.append(json.loads((Path(tmp) / f"{name}_{r}" / "results.json").read_text())["attacks"]["seconds"])
                print(f"round {r} {name}: {times[name][-1]:.1f} s (train {res.metrics['train/seconds']:.2f} s/epoch, "
                      f"eval {res.metrics['eval/seconds']:.1f} s)", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["attacked"] / med["plain"]
    print(f"median wall: plain {med['plain']:.1f} s, with both attacks {med['attacked']:.1f} s; ratio {ratio:.2f}x")
    print("attack seconds (median): " + ", ".join(f"{k} {statistics.median(s[k] for s in seconds):.2f}"
                                                  for k in seconds[0]))
    return {"rounds": rounds, "wall_s": times, "median_s": med, "ratio": ratio, "attack_seconds": seconds,
            "configs": {"plain": to_dict(plain), "attacked": to_dict(attacked)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["methods", "picks", "cost"])
    ap.add_argument("--sweep", type=Path, help="picks: a finished sweep of search_spaces/robust.yaml")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                    help="methods: an override of every method's runs")
    ap.add_argument("--utility", action="store_true", help="cost: the attacks report utility metrics too")
    ap.add_argument("--cache-dir", default="~/.cache/unlearn-sweeps")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    head = commit()
    print(f"commit {head}; {' '.join(sys.argv)}; torch threads {torch.get_num_threads()}", flush=True)
    if args.part == "picks" and args.sweep is None:
        raise SystemExit("picks needs --sweep DIR (a finished sweep of search_spaces/robust.yaml)")
    doc = (methods(args.seeds, args.cache_dir, args.extra) if args.part == "methods"
           else picks(args.sweep, args.seeds, args.cache_dir) if args.part == "picks"
           else cost(args.rounds, args.cache_dir, args.utility))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"commit": head, "argv": sys.argv, "torch_threads": torch.get_num_threads(),
                                         **doc}, indent=1, default=float))


if __name__ == "__main__":
    main()
