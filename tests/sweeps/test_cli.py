"""The command line's parsing: overrides before or after options, and what it refuses; the commands it
prints (no sweep runs)."""

import shlex

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


@pytest.mark.parametrize("command", [["report"], ["resume"], ["export-best", "--out", "x.yaml"], ["sync-mlflow"]])
def test_a_directory_that_is_not_there_is_one_line_before_any_library_loads(command, tmp_path, capsys):
    missing, a_file = tmp_path / "nope", tmp_path / "f"
    a_file.write_text("")
    for where, what in ((missing, "does not exist"), (a_file, "is not a directory")):
        argv = [command[0], str(where), *command[1:]]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err == f"error: {where} {what}; valid: a directory written by `unlearn-sweep launch --out DIR` or " \
                      "`unlearn-sweep compare --out DIR`\n"


def test_export_best_needs_a_destination(capsys):
    with pytest.raises(SystemExit):
        main(["export-best", "somewhere"])
    err = capsys.readouterr().err
    assert "--out FILE" in err and "--pareto OUTDIR" in err


def _commands(text: str) -> dict[str, list[str]]:
    """Each ``name:`` line's value as a shell splits it."""
    return {line.split(":", 1)[0]: shlex.split(line.split(":", 1)[1]) for line in text.splitlines()}


def test_printed_commands_survive_a_shell(tmp_path):
    """A sweep directory with spaces and non-ASCII characters: each printed command is one word per argument."""
    from sweeps.cli import format_where
    from sweeps.layout import default_tracking_uri
    from sweeps.fit import SweepResult
    from sweeps.signals import SweepInterrupted

    root = tmp_path / "runs" / "ü 目录" / "s"
    uri = default_tracking_uri(root)
    where = _commands(format_where(SweepResult(root, [], None, mlflow_uri=uri, experiment_id="7")))
    assert where["browse"] == ["mlflow", "ui", "--backend-store-uri", uri]
    assert where["study"] == ["optuna-dashboard", f"sqlite:///{root / 'optuna.db'}"]
    # the runs page (MLflow 3.17's UI would open the GenAI overview without workflowType)
    assert where["runs"] == ["http://127.0.0.1:5000/#/experiments/7/runs?workflowType=machine_learning"]
    hint = str(SweepInterrupted(root)).split("continue it with: ", 1)[1]
    assert shlex.split(hint) == ["unlearn-sweep", "resume", str(root)]


def test_a_tracking_server_gets_its_own_runs_page(tmp_path):
    from sweeps.cli import format_where
    from sweeps.fit import SweepResult

    where = _commands(format_where(SweepResult(tmp_path, [], None, mlflow_uri="http://mlflow.lab:5000/",
                                               experiment_id="12")))
    assert "browse" not in where
    assert where["runs"] == ["http://mlflow.lab:5000/#/experiments/12/runs?workflowType=machine_learning"]



@pytest.mark.parametrize("argv", [["launch", "satimp"], ["resume", "D"], ["run", "--out", "D"]])
def test_verbose_is_an_option_of_the_commands_that_start_ray(argv):
    assert _parse(build_parser(), [*argv, "--verbose"]).verbose is True
    assert _parse(build_parser(), argv).verbose is False


def test_rays_token_notice_is_hidden_unless_verbose(caplog):
    """The notice ray.init logs when it starts a local cluster with token authentication (Ray >= 2.59)."""
    import logging

    import ray._private.authentication.authentication_token_setup as token_setup

    from sweeps.cluster import TOKEN_NOTICE_LOGGER, _token_notice

    assert token_setup.logger.name == TOKEN_NOTICE_LOGGER  # where Ray logs it
    for shown in (False, True):
        caplog.clear()
        with _token_notice(shown):
            token_setup._warn_token_auth_enabled()
        assert ("Token authentication is enabled" in caplog.text) is shown
    assert token_setup.logger.level == logging.NOTSET  # put back
