"""export-best --model of a LoRA trial: the merged model with its adapter, copied in one atomic rename."""

from sweeps.report.export import _copy_dir_atomic


def test_a_lora_trials_adapter_travels_inside_the_exported_model(tmp_path):
    model, adapter, dest = tmp_path / "run" / "model", tmp_path / "run" / "adapter", tmp_path / "best"
    for d, name in ((model, "model.safetensors"), (adapter, "adapter_model.safetensors")):
        d.mkdir(parents=True)
        (d / name).write_bytes(name.encode())
    (dest / "stale").mkdir(parents=True)  # --force: the old export is replaced as a whole
    _copy_dir_atomic(model, dest, {"adapter": adapter})
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*")) == [
        "adapter", "adapter/adapter_model.safetensors", "model.safetensors"]
    assert not list(tmp_path.glob(".best.*"))
