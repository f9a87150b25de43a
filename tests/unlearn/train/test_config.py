"""RunConfig pieces owned by unlearn.train.config: warm-up in epochs."""

from __future__ import annotations

import pytest

from unlearn.errors import ConfigError
from unlearn.train.config import OptimConfig, load_run_config


def test_warmup_epochs_become_steps_where_the_run_knows_the_epoch_length():
    optim = load_run_config(None, ["optim.epochs=5", "optim.warmup_epochs=1"]).optim
    assert optim.with_warmup_steps(7) == OptimConfig(epochs=5, warmup_steps=7)  # one epoch of steps
    assert optim.with_warmup_steps(0).warmup_steps == 1  # never a zero-length warm-up once asked for
    assert OptimConfig(epochs=4, warmup_epochs=0.5).with_warmup_steps(9).warmup_steps == 4  # round(4.5)
    plain = OptimConfig(warmup_steps=3)
    assert plain.with_warmup_steps(100) is plain


def test_warmup_errors_name_the_fields():
    with pytest.raises(ConfigError, match="optim.warmup_steps=2 and optim.warmup_epochs=1.0 are both set"):
        OptimConfig(warmup_steps=2, warmup_epochs=1.0)
    with pytest.raises(ConfigError, match=r"optim.warmup_epochs=6.0 is out of range; valid: \[0.0, 5\]"):
        OptimConfig(epochs=5, warmup_epochs=6.0)


def test_loss_path_defaults_to_auto_and_fused_is_stored_as_chunked():
    assert OptimConfig().loss_path == "auto"
    assert OptimConfig(loss_path="fused") == OptimConfig(loss_path="chunked")  # existing YAML keeps working
    assert load_run_config(None, ["optim.loss_path=fused"]).optim.loss_path == "chunked"
    assert load_run_config(None, ["optim.loss_path=naive"]).optim.loss_path == "naive"


@pytest.mark.parametrize("path", ["cce", "liger"])
def test_forced_kernel_without_the_gpu_extra_is_refused_at_load(monkeypatch, path):
    from unlearn.losses import head

    monkeypatch.setattr(head, "kernel_installed", lambda name: False)
    with pytest.raises(ConfigError, match=rf"optim.loss_path='{path}' needs the .* package .* not installed; valid: "
                                          r"install the GPU extra \(pip install -e '\.\[gpu\]'\)"):
        load_run_config(None, [f"optim.loss_path={path}"])


def test_unknown_loss_path_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"optim.loss_path='cut'.*valid: auto, chunked, naive, cce, liger, fused"):
        load_run_config(None, ["optim.loss_path=cut"])


# ------------------------------------------------------------------ overrides change one field


def _changed_fields(a, b, prefix=""):
    """Dotted names of the leaf fields where two configs differ."""
    import dataclasses

    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if dataclasses.is_dataclass(x) and dataclasses.is_dataclass(y) and type(x) is type(y):
            out += _changed_fields(x, y, f"{prefix}{f.name}.")
        elif x != y:
            out.append(prefix + f.name)
    return out


def test_a_method_override_keeps_the_default_method():
    """``run method.beta1=3`` is SatImp-GD with beta1 3 (it ran SatImp-GA, without a retain term, before)."""
    from unlearn.train.config import DEFAULT_METHOD, RunConfig, load_run_config

    cfg = load_run_config(None, ["method.beta1=3"])
    assert RunConfig().method == DEFAULT_METHOD
    assert (cfg.method.objective, cfg.method.alpha, cfg.method.beta2) == ("gd", 1.0, 0.1)
    assert cfg.method.label == "satimp-gd" and cfg.method.beta1 == 3.0
    assert _changed_fields(RunConfig(), cfg) == ["method.beta1"]
    # the default's own values written out are the default
    assert load_run_config(None, ["method.beta1=5.0", "method.beta2=0.1"]) == RunConfig()


@pytest.mark.parametrize("override, field", [
    ("data.max_length=64", "data.max_length"),
    ("model.name=tiny", None),  # the default model: nothing changes
    ("prepare.epochs=3", "prepare.epochs"),
    ("method.alpha=0.5", "method.alpha"),
    ("method.granularity=instance", "method.granularity"),
    ("optim.lr=0.01", "optim.lr"),
    ("eval.batch_size=4", "eval.batch_size"),
    ("scaling.cpus_per_worker=2", "scaling.cpus_per_worker"),
    ("seed=9", "seed"),
    ("checkpoint_every=0", "checkpoint_every"),
])
def test_an_override_changes_its_field_and_nothing_else(override, field):
    from unlearn.train.config import RunConfig, load_run_config

    assert _changed_fields(RunConfig(), load_run_config(None, [override])) == ([field] if field else [])


def test_choosing_another_component_drops_the_defaults_that_no_longer_apply():
    from unlearn.errors import ConfigError
    from unlearn.train.config import load_run_config

    npo = load_run_config(None, ["method.objective=npo"]).method
    assert (npo.weighting, npo.beta1, npo.beta2, npo.alpha) == ("satimp", 5.0, 0.1, 1.0)
    uniform = load_run_config(None, ["method.weighting=uniform"]).method
    assert (uniform.label, uniform.beta1, uniform.beta2, uniform.alpha) == ("uniform-gd", None, None, 1.0)
    # a parameter given explicitly is checked as always
    with pytest.raises(ConfigError, match=r"parameter 'beta1' does not apply"):
        load_run_config(None, ["method.weighting=uniform", "method.beta1=2"])


def test_a_method_section_of_a_file_replaces_the_default(tmp_path):
    from unlearn.train.config import load_run_config

    path = tmp_path / "c.yaml"
    path.write_text("method: {weighting: uniform, objective: ga}\n")
    cfg = load_run_config(path, ["method.gamma=1.0"])
    assert (cfg.method.label, cfg.method.alpha, cfg.method.gamma) == ("uniform-ga", None, 1.0)
