"""The command line's parsing: overrides before or after options, and what it refuses (no sweep runs)."""

import pytest

from sweeps.cli import _parse, build_parser, main


@pytest.mark.parametrize(("argv", "config", "overrides"), [
    (["launch", "satimp", "--out", "D", "budget.num_samples=3"], None, ["budget.num_samples=3"]),
    (["launch", "satimp", "a=1", "--out", "D", "b=2"], None, ["a=1", "b=2"]),
    (["launch", "--out", "D", "satimp", "a=1"], None, ["a=1"]),
    (["run", "--out", "D", "my.yaml", "method.beta1=3"], "my.yaml", ["method.beta1=3"]),
    (["run", "--out", "D", "optim.lr=1e-3"], None, ["optim.lr=1e-3"]),
    (["run", "my.yaml", "--out", "D", "seed=3"], "my.yaml", ["seed=3"]),
])
def test_key_value_overrides_go_before_or_after_the_options(argv, config, overrides):
    args = _parse(build_parser(), argv)
    assert args.overrides == overrides
    assert getattr(args, "config", None) == config or args.space == "satimp"


def test_unknown_options_are_still_refused(capsys):
    with pytest.raises(SystemExit) as info:
        main(["launch", "satimp", "--out", "D", "--num-samples", "3"])
    assert info.value.code == 2 and "unrecognized arguments: --num-samples 3" in capsys.readouterr().err


def test_export_best_needs_a_destination(capsys):
    with pytest.raises(SystemExit):
        main(["export-best", "somewhere"])
    err = capsys.readouterr().err
    assert "--out FILE" in err and "--pareto OUTDIR" in err
