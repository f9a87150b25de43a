"""The small MUSE setup (``search_spaces/presets/muse_small.yaml``) measured: unlearned points and the retain
model's membership AUCs.

    python -m bench.muse_small points --grid --json bench/results/muse_small_grid.json
    python -m bench.muse_small points --point 5,0.1,1,4e-3 --point 0.3412,0.4322,0.5001,2.006e-3 \\
        --point 0.3724,0.01556,1.071,2.725e-3 --seeds 5000 5001 5002 --json bench/results/muse_small_confirm.json
    python -m bench.muse_small retain-auc --seeds 0 1 2 --json bench/results/muse_small_retain_auc.json

``points``: SatImp-GD runs of the preset (its one unlearning epoch, on the prepared models of
``prepare.seed`` 0, from the prepare cache: the models README's MUSE command prepares) at each ``--point``
``beta1,beta2,alpha,lr`` (``--grid``: the beta1 x lr grid below), one run per ``--seeds`` seed (default: the
preset's). Prints every separating MUSE metric, each AUC and privleak with its 95 % DeLong interval, and per
point the mean over seeds.

``retain-auc``: the retain model alone (trained as prepare trains it: the preset's tokenizer, model,
schedule and retain side) under variants of the retain side, at each ``--seeds`` prepare seed, scored against
itself (privleak's reference): its four membership AUCs on the 100 privleak forget vs 100 holdout texts. A
model that never saw the forget texts should score near 0.5; the variants show what moves it.

Every figure is saved with the commit and the resolved config. The data are the local MUSE-News copy.
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

from bench.replicate_table import commit
from unlearn.benchmarks.muse import names
from unlearn.config import to_dict
from unlearn.models import train_tokenizer
from unlearn.train.config import RunConfig, load_run_config
from unlearn.train.prepare import finetune, preset_model
from unlearn.train.run import run_local

ROOT = Path(__file__).resolve().parent.parent
PRESET = ROOT / "search_spaces" / "presets" / "muse_small.yaml"
DATA = ROOT.parent / "shared" / "data" / "muse_news"
SHOWN = (names.FORGET_VERBMEM_ROUGE, names.FORGET_KNOWMEM_ROUGE, names.RETAIN_KNOWMEM_ROUGE)
# beta1 from the authors' 5 down to where privleak moves, at the preset's lr and at 1e-2; then the lower
# corner at smaller lrs, beta2 0.4 and alpha 2
GRID = [(b1, 0.1, 1.0, 4e-3) for b1 in (0.0, 0.1, 0.25, 0.35, 0.5, 1.0, 2.0, 3.0)] + \
       [(b1, 0.1, 1.0, 1e-2) for b1 in (0.25, 0.5, 1.0, 2.0)] + \
       [(0.0, 0.1, 1.0, 1e-3), (0.0, 0.1, 1.0, 2e-3), (0.1, 0.1, 1.0, 2e-3), (0.25, 0.1, 1.0, 2e-3),
        (0.25, 0.1, 1.0, 7e-3), (1.0, 0.0, 1.0, 4e-3), (0.25, 0.4, 1.0, 4e-3), (0.1, 0.1, 2.0, 4e-3),
        (0.25, 0.1, 2.0, 4e-3)]
# retain-side variants: (name, overrides, tokenizer without the forget articles)
VARIANTS: list[tuple[str, list[str], bool]] = [
    ("preset (5 retain texts)", [], False),
    ("data.max_articles=8 (8 retain texts)", ["data.max_articles=8"], False),
    ("data.max_articles=12 (12 retain texts)", ["data.max_articles=12"], False),
    ("data.max_articles=16 (16 retain texts)", ["data.max_articles=16"], False),
    ("prepare.epochs=8", ["prepare.epochs=8"], False),
    ("prepare.epochs=32", ["prepare.epochs=32"], False),
    ("tokenizer without the forget articles", [], True),
]


def _config(*overrides: str) -> RunConfig:
    return load_run_config(PRESET, [f"data.path={DATA}", *overrides])


def _point(text: str) -> tuple[float, float, float, float]:
    try:
        b1, b2, alpha, lr = (float(x) for x in text.split(","))
    except ValueError:
        raise SystemExit(f"--point {text!r}: expected beta1,beta2,alpha,lr (4 numbers), e.g. 5,0.1,1,4e-3")
    return b1, b2, alpha, lr


def _interval(m: dict[str, float], k: str, digits: int) -> str:
    return f"{m[k]:.{digits}f} [{m[names.ci_low(k)]:.{digits}f}, {m[names.ci_high(k)]:.{digits}f}]"


def _line(m: dict[str, float]) -> str:
    return "  ".join([*(f"{m[k]:.3f}" for k in SHOWN), _interval(m, names.MIA_MIN_K, 3),
                      _interval(m, names.PRIVLEAK, 1)])


def points(pts: list[tuple[float, float, float, float]], seeds: list[int] | None) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    print(f"{'beta1':>6} {'beta2':>6} {'alpha':>6} {'lr':>8} {'seed':>10}  verbmem  knowmem_f  knowmem_r  "
          "min-k AUC [95 %]  privleak [95 %]", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-muse-") as tmp:
        for i, (b1, b2, alpha, lr) in enumerate(pts):
            point = [f"method.beta1={b1}", f"method.beta2={b2}", f"method.alpha={alpha}", f"optim.lr={lr}"]
            for seed in seeds or [None]:
                cfg = _config(*point, *([f"seed={seed}"] if seed is not None else []))
                t0 = time.perf_counter()
                metrics = run_local(cfg, Path(tmp) / f"{i}_{seed}", log=lambda s: None).metrics
                runs.append({"point": [b1, b2, alpha, lr], "seed": cfg.seed, "seconds": time.perf_counter() - t0,
                             "metrics": metrics, "config": to_dict(cfg)})
                print(f"{b1:6.3g} {b2:6.3g} {alpha:6.3g} {lr:8.2g} {cfg.seed:>10}  {_line(metrics)}", flush=True)
    summary = []
    for b1, b2, alpha, lr in pts:
        mine = [r["metrics"] for r in runs if r["point"] == [b1, b2, alpha, lr]]
        mean = {k: statistics.fmean(m[k] for m in mine) for k in (*SHOWN, names.ABS_PRIVLEAK, names.MIA_MIN_K)}
        summary.append({"point": [b1, b2, alpha, lr], "runs": len(mine), "mean": mean})
        if len(mine) > 1:
            print(f"mean of {len(mine)} ({b1:.4g}, {b2:.4g}, {alpha:.4g}, {lr:.4g}): "
                  + "  ".join(f"{k} {v:.3f}" for k, v in mean.items()), flush=True)
    return {"runs": runs, "summary": summary}


def _retain_model(cfg: RunConfig, without_forget_articles: bool) -> dict[str, float]:
    bench = cfg.benchmark
    data = bench.load(cfg.data)
    corpus = bench.tokenizer_corpus(data, cfg.data)
    if without_forget_articles:
        forget = set(data.forget_texts)
        corpus = [t for t in corpus if t not in forget]
    tokenizer = train_tokenizer(corpus, cfg.model.vocab_size)
    examples = bench.finetune_examples(tokenizer, data, cfg.data, "retain")
    retain = finetune(preset_model(cfg, tokenizer), examples, cfg, "retain", lambda s: None, tokenizer.pad_token_id)
    metrics = bench.evaluate(retain, tokenizer, data, cfg.data, cfg.eval, "self").metrics
    return {"retain_texts": len(data.retain_texts), "retain_tokens": sum(len(e.input_ids) for e in examples),
            "metrics": metrics}


def retain_auc(seeds: list[int]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    for name, overrides, without in VARIANTS:
        for seed in seeds:
            cfg = _config(*overrides, f"prepare.seed={seed}")
            t0 = time.perf_counter()
            row = _retain_model(cfg, without)
            m = row["metrics"]
            rows.append({"variant": name, "seed": seed, "seconds": time.perf_counter() - t0, **row,
                         "config": to_dict(cfg)})
            print(f"{name:40s} seed {seed}: {row['retain_texts']:2d} texts {row['retain_tokens']:6d} tokens  "
                  + "  ".join(f"{k.removeprefix('mia_')} {_interval(m, k, 3)}" for k in names.MIA_METRICS),
                  flush=True)
    return {"variants": [v[0] for v in VARIANTS], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.muse_small", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("points", help="SatImp-GD runs of the preset at given points and seeds")
    p.add_argument("--point", action="append", default=[], help="beta1,beta2,alpha,lr (repeatable)")
    p.add_argument("--grid", action="store_true", help="the beta1 x lr grid (GRID)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="run seeds (default: the preset's)")
    p.add_argument("--json", type=Path)
    r = sub.add_parser("retain-auc", help="the retain model's membership AUCs under retain-side variants")
    r.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="prepare seeds")
    r.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    recorded = commit()  # the code the figures come from, before anything is written
    if not (DATA / "MANIFEST.json").is_file():
        raise SystemExit(f"no local MUSE-News copy at {DATA}")
    if args.cmd == "points":
        pts = [*(GRID if args.grid else []), *(_point(t) for t in args.point)]
        if not pts:
            raise SystemExit("points: give --point beta1,beta2,alpha,lr (repeatable) or --grid")
        out = points(pts, args.seeds)
    else:
        out = retain_auc(args.seeds)
    out = {"commit": recorded, "command": " ".join(["python -m bench.muse_small", *(argv or sys.argv[1:])]), **out}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
        print(f"saved {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
