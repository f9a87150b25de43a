"""How the policy (and the frozen reference) are placed on the workers: single process, DDP or FSDP2.

Checkpoints use ``torch.distributed.checkpoint`` for every strategy (sharded files for FSDP2), holding
model, optimizer and scheduler state; the loop's randomness is derived from (seed, epoch, step), so no
RNG state is needed for an exact resume.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import torch
import torch.distributed as tdist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from unlearn.errors import unknown_name

STRATEGIES = ("single", "ddp", "fsdp")


def _decoder_layers(module: nn.Module) -> list[nn.Module]:
    lm = module.lm
    backbone = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model
    return list(backbone.layers)


class Strategy:
    """Single process: the module as it is."""

    name = "single"

    def __init__(self, device: torch.device, world_size: int = 1) -> None:
        self.device = device
        self.world_size = world_size

    def wrap(self, module: nn.Module, *, trainable: bool) -> nn.Module:
        module.to(self.device)
        if not trainable:
            module.requires_grad_(False).eval()
        return module

    def full_state_dict(self, module: nn.Module) -> dict[str, torch.Tensor]:
        """The unsharded state dict on CPU (rank 0; other ranks may get an empty dict)."""
        return get_model_state_dict(module, options=StateDictOptions(full_state_dict=True, cpu_offload=True))

    def barrier(self) -> None:
        if self.world_size > 1:
            tdist.barrier()

    def save(self, path: Path, module: nn.Module, optimizer, scheduler, epoch: int) -> None:
        """Sharded (DCP) checkpoint of model + optimizer, and a small JSON with epoch and scheduler."""
        msd, osd = get_state_dict(module, optimizer)
        with _one_process_ok():
            dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(path / "state"))
        if not tdist.is_initialized() or tdist.get_rank() == 0:
            (path / "meta.json").write_text(json.dumps({"epoch": epoch, "scheduler": scheduler.state_dict()}))
        self.barrier()

    def load(self, path: Path, module: nn.Module, optimizer, scheduler) -> int:
        """Restore a checkpoint written by ``save``; returns the number of epochs it had completed."""
        msd, osd = get_state_dict(module, optimizer)
        state = {"model": msd, "optim": osd}
        with _one_process_ok():
            dcp.load(state, checkpoint_id=str(path / "state"))
        set_state_dict(module, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
        meta = json.loads((path / "meta.json").read_text())
        scheduler.load_state_dict(meta["scheduler"])
        return int(meta["epoch"])


@contextlib.contextmanager
def _one_process_ok():
    """DCP warns that it saves / loads "in a single process" without a process group: a one-process run
    (``run_local``, Ray Train's local mode) does exactly that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


class DDPStrategy(Strategy):
    """Data parallel: every worker holds the whole model; gradients are all-reduced."""

    name = "ddp"

    def wrap(self, module: nn.Module, *, trainable: bool) -> nn.Module:
        module = super().wrap(module, trainable=trainable)
        if not trainable:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def full_state_dict(self, module: nn.Module) -> dict[str, torch.Tensor]:
        return super().full_state_dict(module.module if hasattr(module, "module") else module)


class FSDPStrategy(Strategy):
    """FSDP2: each decoder layer and the root are sharded over the workers; bf16 compute on GPU."""

    name = "fsdp"

    def wrap(self, module: nn.Module, *, trainable: bool) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mesh = init_device_mesh(self.device.type, (self.world_size,))
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
            if self.device.type == "cuda" else MixedPrecisionPolicy()
        module.to(self.device)
        if not trainable:
            module.requires_grad_(False).eval()
        for layer in _decoder_layers(module):
            fully_shard(layer, mesh=mesh, mp_policy=mp)
        fully_shard(module, mesh=mesh, mp_policy=mp)
        return module


def make_strategy(name: str, device: torch.device, world_size: int) -> Strategy:
    """Strategy by name; an unknown one lists the valid names."""
    classes = {"single": Strategy, "ddp": DDPStrategy, "fsdp": FSDPStrategy}
    if name not in classes:
        raise unknown_name("strategy", name, classes)
    return classes[name](device, world_size)


def local_parameter_count(module: nn.Module) -> int:
    """Parameters held by this process (the local shard under FSDP2)."""
    total = 0
    for p in module.parameters():
        local = p.to_local() if hasattr(p, "to_local") else p
        total += local.numel()
    return total
