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
