"""Trained parameters whatever holds them: their plain names, whole values and the share this process keeps.

An engine may replace the trained parameters by shards (FSDP2's DTensors) or partitions (DeepSpeed ZeRO-3,
``ds_tensor``) and wrap modules whose names then appear in parameter names. These helpers give back what one
process would see, so that saved weights and training state do not depend on how the model was trained.
"""

from __future__ import annotations

import torch

from ..errors import BenchmarkError


def whole(t: torch.Tensor) -> torch.Tensor:
    """``t`` as a whole tensor: an FSDP2 DTensor or a DeepSpeed ZeRO-3 partition is gathered (every process must
    call this then); a plain tensor is itself."""
    if hasattr(t, "ds_tensor"):  # a DeepSpeed ZeRO-3 partition: gathered on every rank for the copy
        import deepspeed

        with deepspeed.zero.GatheredParameters([t]):
            return t.data.detach().cpu().clone()
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def local_numel(p: torch.Tensor) -> int:
    """Elements of ``p`` this process holds: its shard under FSDP2 (DTensor) or ZeRO-3 (``ds_tensor``)."""
    if hasattr(p, "ds_tensor"):
        return p.ds_tensor.numel()
    return p.to_local().numel() if hasattr(p, "to_local") else p.numel()


def is_sharded(model: torch.nn.Module) -> bool:
    """Whether ``model``'s trained parameters are shards (FSDP2 DTensors) rather than whole tensors."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters() if p.requires_grad)


# Modules that wrappers (activation checkpointing, FSDP1, torch.compile) insert into parameter names; state dicts
# leave them out, and so does projbench, so that names do not depend on how the model was wrapped for training.
_WRAPPER_PARTS = frozenset({"_checkpoint_wrapped_module", "_fsdp_wrapped_module", "_orig_mod"})


def plain_name(name: str) -> str:
    """A parameter's name as the unwrapped model has it (and as torch's state dicts give it)."""
    return ".".join(part for part in name.split(".") if part not in _WRAPPER_PARTS)


def trained_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """The parameters that train, by their plain names."""
    return {plain_name(n): p for n, p in model.named_parameters() if p.requires_grad}


# An engine that swaps the optimizer's parameters for its own (DeepSpeed's flat partitions) keeps the lists the
# optimizer was built with here, so that parameter order and names stay those of the model.
ORIGINAL_PARAMS = "_projbench_original_params"


def original_param_groups(optimizer) -> list[list[torch.nn.Parameter]]:
    """The optimizer's parameters per group as it was built."""
    return optimizer.__dict__.get(ORIGINAL_PARAMS) or [list(g["params"]) for g in optimizer.param_groups]


def optimizer_param_names(model: torch.nn.Module, optimizer) -> list[str]:
    """The plain name of each optimizer parameter, in the order torch numbers them in a state dict."""
    names = {id(p): plain_name(n) for n, p in model.named_parameters()}
    params = [p for group in original_param_groups(optimizer) for p in group]
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise BenchmarkError(f"optimizer parameters {missing} are not parameters of {type(model).__name__}.")
    return [names[id(p)] for p in params]
