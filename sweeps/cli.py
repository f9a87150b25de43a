"""``unlearn-sweep``: a thin command line over library functions (parse, build a config, call)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from unlearn.errors import UnlearnError


def _cmd_losses(args: argparse.Namespace) -> int:
    from unlearn.losses.catalog import format_catalog

    print(format_catalog())
    return 0


def _run_config(args: argparse.Namespace):
    from unlearn.train.config import load_run_config

    return load_run_config(args.config, args.overrides)


def _cmd_prepare(args: argparse.Namespace) -> int:
    from unlearn.train.prepare import prepare

    prepared = prepare(_run_config(args))
    print(f"target model: {prepared.target_dir}\nretain statistics: {prepared.root / 'retain_stats.json'}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from sweeps.train import run_unlearning
    from unlearn.data.benchmark import load_benchmark
    from unlearn.train.prepare import check_prepare_inputs

    cfg = _run_config(args)
    check_prepare_inputs(cfg, load_benchmark(cfg.data))  # bad paths / statistics fail before Ray starts
    result = run_unlearning(cfg, args.out, address=args.address, storage_path=args.storage_path)
    m = result.metrics if result else {}
    keys = ("forget_quality", "model_utility", "forget_truth_ratio", "forget_rouge", "forget_es", "retain_es")
    print("\n".join(f"{k:>20}: {m[k]:.4g}" for k in keys if k in m))
    print(f"results: {Path(args.out).resolve() / 'results.json'}\nmodel:   {Path(args.out).resolve() / 'model'}")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="run config YAML (default: the embedded default)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of any config field, e.g. method.beta1=3 optim.lr=2e-5")


def _split_config(args: argparse.Namespace) -> None:
    """``run a=b`` has no config file: a first positional with '=' is an override."""
    if args.config is not None and "=" in args.config and not Path(args.config).exists():
        args.overrides = [args.config, *args.overrides]
        args.config = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unlearn-sweep",
        description="Find the loss-reweighting settings that make a language model forget (SatImp and its family).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("losses", help="list the loss components (weightings, granularity, sampling, objectives)")
    p.set_defaults(func=_cmd_losses)

    p = sub.add_parser("prepare", help="fine-tune (and cache) the target and retain models of a setup")
    _add_config_args(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("run", help="one unlearning run on Ray Train workers: prepare (cached) -> unlearn -> evaluate")
    _add_config_args(p)
    p.add_argument("--out", required=True, help="output directory (results.json, model/)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--storage-path", help="Ray Train storage (checkpoints); shared storage on a multi-node cluster")
    p.set_defaults(func=_cmd_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if hasattr(args, "overrides"):
        _split_config(args)
    try:
        return int(args.func(args) or 0)
    except UnlearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
