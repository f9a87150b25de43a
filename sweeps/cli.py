"""``unlearn-sweep``: a thin command line over library functions (parse, build a config, call)."""

from __future__ import annotations

import argparse
import shlex
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
    from sweeps.preflight import check_model_dirs, check_storage_path, check_writable_dir
    from sweeps.cluster import check_address
    from sweeps.ray_run import run_unlearning
    from unlearn.attacks import attack_prefixes
    from unlearn.train.prepare import check_prepare_inputs

    cfg = _run_config(args)
    # bad paths, addresses and statistics fail before anything is written or Ray starts
    check_writable_dir(args.out, "--out", "a new directory, or one holding an interrupted run of this config")
    check_storage_path(args.storage_path)
    check_address(args.address)
    check_model_dirs(cfg)
    check_prepare_inputs(cfg, cfg.benchmark.load(cfg.data))
    result = run_unlearning(cfg, args.out, address=args.address, storage_path=args.storage_path, verbose=args.verbose)
    m = result.metrics if result else {}
    shown = [k for k in cfg.metrics.shown if k in m]
    width = max((len(k) for k in shown), default=0)
    attacks = attack_prefixes(cfg.eval.quant, cfg.eval.relearn)  # each attack's value beside its metric's
    print("\n".join((f"{k:>{width}}: {m[k]:<8.4g}" + "".join(f"  {p.rstrip('_')} {m[p + k]:<8.4g}" for p in attacks
                                                            if p + k in m)).rstrip() for k in shown))
    print(f"results: {Path(args.out).resolve() / 'results.json'}\nmodel:   {Path(args.out).resolve() / 'model'}")
    if cfg.model.lora is not None:
        from unlearn.models.lora import ADAPTER_DIR

        print(f"adapter: {Path(args.out).resolve() / ADAPTER_DIR} (model: the merged weights)")
    return 0


def _cmd_launch(args: argparse.Namespace) -> int:
    from sweeps.layout import SweepSettings
    from sweeps.sweep import launch_sweep

    settings = SweepSettings(out_dir=args.out or _default_out(args.space), address=args.address,
                             storage_path=args.storage_path, mlflow_uri=args.mlflow_uri,
                             optuna_storage=args.optuna_storage, progress=not args.quiet, verbose=args.verbose)
    return _print_outcome(lambda: launch_sweep(args.space, args.overrides, settings))


def _default_out(space: str) -> str:
    import time

    return f"sweeps_out/{Path(space).stem}-{time.strftime('%Y%m%d-%H%M%S')}"


def _cmd_compare(args: argparse.Namespace) -> int:
    from sweeps.compare import load_compare, run_compare
    from sweeps.compare.run import CompareSettings

    spec = load_compare(args.spec)
    settings = CompareSettings(out_dir=args.out, address=args.address, mlflow_uri=args.mlflow_uri,
                               progress=not args.quiet, verbose=args.verbose)
    return _print_comparison(lambda: run_compare(spec, settings))


def _print_comparison(compare) -> int:
    from sweeps.compare.output import LEADERBOARD_MD
    from sweeps.sweep import SweepInterrupted

    try:
        result = compare()
    except SweepInterrupted as e:
        print(f"\ncomparison interrupted in {e}; continue it with `unlearn-sweep resume DIR`", file=sys.stderr)
        return 128 + e.signum
    print((result.out_dir / LEADERBOARD_MD).read_text())
    for method, why in result.failed.items():
        print(f"method {method}: {why}", file=sys.stderr)
    print(f"leaderboard: {result.out_dir / LEADERBOARD_MD} (and .csv, fronts.png)")
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    from sweeps.compare.run import is_compare_dir, resume_or_run_compare
    from sweeps.sweep import resume_sweep

    if is_compare_dir(args.dir):
        return _print_comparison(lambda: resume_or_run_compare(args.dir, address=args.address,
                                                               progress=not args.quiet, verbose=args.verbose))

    return _print_outcome(lambda: resume_sweep(args.dir, address=args.address, progress=not args.quiet,
                                               verbose=args.verbose))


INTERRUPTED_EXIT = 130  # the shell's code for a command stopped by SIGINT (128 + 2); SIGTERM: 143
NO_TRIAL_EXIT = 1  # the sweep ran, but no trial finished


def _print_outcome(sweep) -> int:
    from sweeps.layout import SPACE_FILE
    from sweeps.report import format_report
    from sweeps.space import load_sweep_space
    from sweeps.sweep import NoTrialFinished, SweepInterrupted

    try:
        result = sweep()
    except SweepInterrupted as e:
        if not e.undone and (e.out_dir / SPACE_FILE).is_file():  # what ran so far
            print(format_report(e.out_dir, load_sweep_space(e.out_dir)))
        print(f"\nsweep {e}", file=sys.stderr)
        return 128 + e.signum
    except NoTrialFinished as e:
        print(format_report(e.result.out_dir, load_sweep_space(e.result.out_dir)))
        print(f"\nerror: {e}", file=sys.stderr)
        return NO_TRIAL_EXIT
    print(format_report(result.out_dir, load_sweep_space(result.out_dir)))
    if result.best is not None:
        import yaml

        cfg = result.best.config
        shown = {"method": {k: v for k, v in cfg["method"].items() if v is not None}, "optim": cfg["optim"],
                 "seed": cfg["seed"]}
        print("\nbest config (trial " + result.best.trial_id + "; in full in best_config.yaml):")
        print(yaml.safe_dump(shown, sort_keys=False, default_flow_style=None).rstrip())
    print("\n" + format_where(result))
    return 0


def format_where(result) -> str:
    """Where a finished sweep's results are, and the commands that open them (quoted for a POSIX shell:
    a sweep directory may hold spaces or any other character)."""
    from sweeps.layout import OPTUNA_DB
    from sweeps.tracking import MLFLOW_UI, runs_page_url

    lines = [f"results:   {result.out_dir}"]
    if result.best is not None:
        lines.append(f"best:      {result.out_dir / 'best_config.yaml'}  (unlearn-sweep run it to reproduce)")
    else:
        lines.append("best:      none (no finished trial has all objective metrics)")
    uri, sqlite = result.mlflow_uri, result.mlflow_uri.startswith("sqlite")
    if sqlite:
        lines.append(f"browse:    mlflow ui --backend-store-uri {shlex.quote(uri)}")
    if result.experiment_id is not None:  # the runs, not MLflow 3's GenAI overview
        lines.append(f"runs:      {runs_page_url(MLFLOW_UI if sqlite else uri, result.experiment_id)}")
    elif not sqlite:
        lines.append(f"browse:    {uri}")
    lines.append(f"study:     optuna-dashboard {shlex.quote(f'sqlite:///{result.out_dir / OPTUNA_DB}')}")
    return "\n".join(lines)


def _cmd_report(args: argparse.Namespace) -> int:
    from sweeps.layout import load_sweep_meta
    from sweeps.report import format_report
    from sweeps.space import load_sweep_space

    from sweeps.compare.run import is_compare_dir

    root = Path(args.dir).expanduser().resolve()
    if is_compare_dir(root):
        from sweeps.compare import load_leaderboard
        from sweeps.compare.hypotheses import format_verdicts, test_hypotheses
        from sweeps.compare.output import format_leaderboard
        from sweeps.compare.run import load_compare_dir

        board = load_leaderboard(root)
        print(format_leaderboard(board) + format_verdicts(test_hypotheses(load_compare_dir(root)[0], board)))
        return 0
    load_sweep_meta(root)
    print(format_report(root, load_sweep_space(root)))
    return 0


def _cmd_export_best(args: argparse.Namespace) -> int:
    from sweeps.layout import load_sweep_meta
    from sweeps.report import export_best
    from sweeps.space import load_sweep_space

    from sweeps.compare.run import is_compare_dir, load_compare_dir, method_dir
    from unlearn.errors import ConfigError

    root = Path(args.dir).expanduser().resolve()
    if is_compare_dir(root):  # a comparison: export one method's confirmed best (its sweep's)
        spec, _ = load_compare_dir(root)
        if args.method is None:
            raise ConfigError(f"{root} is a comparison; valid: --method NAME, one of "
                               f"{', '.join(m.name for m in spec.methods)}")
        root = method_dir(root, spec.method(args.method).name)
    elif args.method is not None:
        raise ConfigError(f"--method {args.method} given for {root}, a sweep, not a comparison; valid: drop it")
    load_sweep_meta(root)
    space = load_sweep_space(root)
    if args.pareto:
        from sweeps.report import export_pareto

        index = export_pareto(root, space, Path(args.pareto), force=args.force)
        for row in index:
            values = ", ".join(f"{m}={v:.4g}" for m, v in row["objectives"].items())
            print(f"trial {row['trial']} ({values}) -> {Path(args.pareto) / row['file']}")
        print(f"index: {Path(args.pareto) / 'index.yaml'}; reproduce one: unlearn-sweep run FILE --out DIR")
        if not args.out:
            return 0
    exported = export_best(root, space, Path(args.out),
                           model_dir=Path(args.model) if args.model else None, register=args.register,
                           trial_id=args.trial, force=args.force)
    print(f"trial {exported.trial.trial_id}: config -> {args.out}" + (f", model -> {args.model}" if args.model else "")
          + (f", registered as {exported.registered}" if exported.registered else ""))
    print(f"reproduce: unlearn-sweep run {args.out} --out DIR")
    return 0


def _cmd_sync(args: argparse.Namespace) -> int:
    from sweeps.layout import load_sweep_meta
    from sweeps.lock import sweep_lock
    from sweeps.tracking import sync_buffer

    root = Path(args.dir).expanduser().resolve()
    meta = load_sweep_meta(root)
    with sweep_lock(root, action="sync-mlflow"):  # a running driver replays the same buffer
        n = sync_buffer(root, args.mlflow_uri or meta["tracking_uri"])
    print(f"replayed {n} buffered MLflow operation(s)")
    return 0


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="run config YAML (default: the embedded default)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of any config field, e.g. method.beta1=3 optim.lr=2e-5")


def _add_verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action="store_true",
                   help="Ray's notices (token authentication of a local cluster) and the libraries' progress bars "
                        "(lm-evaluation-harness, datasets)")


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
    _add_verbose(p)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("launch", help="run a sweep (Ray Tune + Optuna) over a search space; every trial in MLflow")
    p.add_argument("space", help="a search-space YAML, or the name of a shipped one (satimp, reweighting, baselines)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="dotted overrides of the space, e.g. budget.num_samples=4 base.optim.epochs=6")
    p.add_argument("--out", help="sweep directory (default: sweeps_out/<space>-<time>)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--storage-path", help="Ray storage for trials and checkpoints (shared storage on a cluster)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI, e.g. http://127.0.0.1:5000 (default: sqlite in --out)")
    p.add_argument("--optuna-storage", help="Optuna database URL (default: sqlite in --out)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    _add_verbose(p)
    p.set_defaults(func=_cmd_launch)

    p = sub.add_parser("compare", help="tune every method of a comparison spec with the same budget, confirm each "
                       "best on common fresh seeds, and rank them (leaderboard.md / .csv, fronts.png)")
    p.add_argument("spec", help="a comparison spec YAML, or a shipped one's name (search_spaces/compare/)")
    p.add_argument("--out", required=True, help="comparison directory (the same one continues a stopped comparison)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local cluster)")
    p.add_argument("--mlflow-uri", help="MLflow tracking URI (default: sqlite in --out)")
    p.add_argument("--quiet", action="store_true", help="no live progress line")
    _add_verbose(p)
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("resume", help="continue an interrupted sweep; finished trials are not re-run")
    p.add_argument("dir")
    p.add_argument("--address")
    p.add_argument("--quiet", action="store_true")
    _add_verbose(p)
    p.set_defaults(func=_cmd_resume)

    p = sub.add_parser("report", help="table of a sweep's trials and its best / Pareto set (no Ray needed)")
    p.add_argument("dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export-best", help="write the best trial's run config (and optionally its model)")
    p.add_argument("dir")
    p.add_argument("--out", help="YAML file for the resolved run config (needed unless --pareto is given)")
    p.add_argument("--pareto", metavar="OUTDIR", help="one YAML per Pareto-optimal feasible trial, and index.yaml")
    p.add_argument("--model", help="copy the trial's unlearned model (HF format) here")
    p.add_argument("--register", metavar="NAME", help="register the model in the MLflow model registry")
    p.add_argument("--trial", help="export this trial instead of the best one")
    p.add_argument("--method", help="in a comparison directory: the method whose confirmed best to export")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out / --model")
    p.set_defaults(func=_cmd_export_best)

    p = sub.add_parser("sync-mlflow", help="replay MLflow operations buffered while the server was unreachable")
    p.add_argument("dir")
    p.add_argument("--mlflow-uri", help="tracking URI (default: the sweep's)")
    p.set_defaults(func=_cmd_sync)
    return parser


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, accepting ``key=value`` overrides (and ``run``'s config file) after the options too:
    ``launch satimp --out DIR budget.num_samples=3``. argparse alone would call them unrecognized (its
    optional positionals are matched, empty, before the first option)."""
    args, extra = parser.parse_known_args(argv)
    if hasattr(args, "overrides"):
        if hasattr(args, "config") and args.config is None and extra and not extra[0].startswith("-") \
                and "=" not in extra[0]:
            args.config, extra = extra[0], extra[1:]
        args.overrides = [*args.overrides, *(e for e in extra if "=" in e and not e.startswith("-"))]
        extra = [e for e in extra if not ("=" in e and not e.startswith("-"))]
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if hasattr(args, "config"):
        _split_config(args)
    if getattr(args, "command", None) == "export-best" and not (args.out or args.pareto):
        parser.error("export-best needs --out FILE (the best trial's config) or --pareto OUTDIR (the Pareto set)")
    return args


def _check_dir(args: argparse.Namespace) -> None:
    """A sweep or comparison directory that is not there: one line before the sweep libraries load (they
    take seconds to import)."""
    where = getattr(args, "dir", None)
    if isinstance(where, str) and not Path(where).expanduser().is_dir():
        from unlearn.errors import ConfigError

        what = "does not exist" if not Path(where).expanduser().exists() else "is not a directory"
        raise ConfigError(f"{where} {what}; valid: a directory written by `unlearn-sweep launch --out DIR` "
                          "or `unlearn-sweep compare --out DIR`")


def main(argv: Sequence[str] | None = None) -> int:
    from sweeps.envvars import QUIET_ENV, scoped_env

    parser = build_parser()
    args = _parse(parser, argv)
    # before the libraries are imported (tqdm reads its switch then); a TQDM_DISABLE of the user's stays
    quiet = QUIET_ENV if hasattr(args, "verbose") and not args.verbose else {}
    try:
        _check_dir(args)
        with scoped_env(quiet, keep_set=True):
            return int(args.func(args) or 0)
    except UnlearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # the file system said no (a full disk, permissions, a path that changed under the command): what
        # it said, in one line; the checks before write catch what can be known in advance
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # a second Ctrl-C during a sweep (the first stops it gracefully), or one before it started; what a
        # sweep saved so far stays resumable (`unlearn-sweep resume DIR`)
        print("\ninterrupted", file=sys.stderr)
        return INTERRUPTED_EXIT


if __name__ == "__main__":
    raise SystemExit(main())
