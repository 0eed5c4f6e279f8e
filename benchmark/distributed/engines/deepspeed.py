"""DeepSpeed ZeRO-3 through accelerate: every parameter partitioned over the ranks, stepped by DeepSpeed.

projbench owns the batch layout, clipping and precision, so they are written into the DeepSpeed config (values
of an accelerate config file that differ are replaced, and reported). DeepSpeed's optimizer steps projbench's
AdamW on flat fp32 partitions; the per-parameter view of the full state comes from DeepSpeed's tensor-fragment
functions (whole tensors, gathered on every rank), the parameter order from the optimizer as it was built.
"""

from __future__ import annotations

import contextlib
import copy

import torch

from ...errors import BenchmarkError
from ..context import ProcessContext
from ..tensors import ORIGINAL_PARAMS, optimizer_param_names, original_param_groups, whole
from .base import BatchLayout, FullState, Optimization, ReadState

DeepSpeedBatch = BatchLayout  # what projbench decides for a DeepSpeed run and writes into its config
_GROUP_KEYS = "_projbench_group_keys"
_MOMENTS = ("exp_avg", "exp_avg_sq")


def deepspeed_config(b: BatchLayout) -> dict:
    """The DeepSpeed config entries projbench sets (the rest: accelerate's, from its config file or defaults).

    DeepSpeed checks train_batch_size = micro-batch x accumulation x processes: the global batch. A bf16 model
    trains in DeepSpeed's bf16 mode (bf16 weights, fp32 master copies and Adam moments in its optimizer: 16 bytes
    per trained parameter, as in LLaVA's own ZeRO-3 runs); an fp32 model in fp32.
    """
    return {
        "train_batch_size": b.global_batch,
        "train_micro_batch_size_per_gpu": b.micro_batch,
        "gradient_accumulation_steps": b.accumulation_steps,
        "gradient_clipping": b.max_grad_norm,
        "bf16": {"enabled": b.dtype == torch.bfloat16},
        "fp16": {"enabled": False},
        # projbench's own AdamW (param groups, lr schedule) on DeepSpeed's partitions, also on CPU, where
        # DeepSpeed would otherwise insist on its compiled CPU Adam.
        "zero_allow_untested_optimizer": True,
        "zero_force_ds_cpu_optimizer": False,
    }


def overwrite(config: dict, values: dict) -> dict:
    """Write ``values`` (nested one level) into ``config``; the entries that held a different value (not "auto")."""
    replaced = {}
    for k, v in values.items():
        if isinstance(v, dict):
            section = config.get(k)
            if not isinstance(section, dict):
                section = config[k] = {}
            replaced.update({f"{k}.{kk}": section[kk] for kk, vv in v.items()
                             if section.get(kk, "auto") not in ("auto", vv)})
            section.update(v)
        else:
            if config.get(k, "auto") not in ("auto", v):
                replaced[k] = config[k]
            config[k] = v
    return replaced


class DeepSpeed:
    """The module and its client optimizer as one DeepSpeed ZeRO-3 engine, made by ``accelerator.prepare``."""

    name = "deepspeed"
    keeps_master_weights = True  # DeepSpeed's bf16 mode keeps the fp32 master copies itself

    def __init__(self, ctx: ProcessContext, layout: BatchLayout):
        self.ctx, self.layout = ctx, layout
        self.engine, self.replaced = None, None

    def prepare(self, module: torch.nn.Module, build) -> tuple[torch.nn.Module, Optimization]:
        optimization = build()  # the engine takes the optimizer: it steps it on its partitions of the weights
        optimizer, acc = optimization.optimizer, self.ctx.accelerator
        config = acc.state.deepspeed_plugin.deepspeed_config
        # What was replaced is recorded against the config as launched, not as the previous training left it.
        given = self.ctx.__dict__.setdefault("deepspeed_config_given", copy.deepcopy(config))
        self.replaced = overwrite(copy.deepcopy(given), deepspeed_config(self.layout))
        overwrite(config, deepspeed_config(self.layout))
        # accelerate warns when its own accumulation count differs from DeepSpeed's; it is only informative here.
        acc.gradient_accumulation_steps = self.layout.accumulation_steps
        # DeepSpeed replaces the optimizer's parameters by flat partitions: keep the order torch numbers them in
        # (and each group's hyper-parameter names) for the full state.
        optimizer.__dict__[ORIGINAL_PARAMS] = [list(g["params"]) for g in optimizer.param_groups]
        optimizer.__dict__[_GROUP_KEYS] = [k for k in optimizer.param_groups[0] if k != "params"]
        self.engine, _ = acc.prepare(module, optimizer)
        return self.engine, optimization

    def accumulating(self, module: torch.nn.Module, last_micro_batch: bool):
        return contextlib.nullcontext()  # the accumulation boundary is set in ``backward``

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        """The engine's backward, and its optimizer step after the last micro-batch (clipping, AdamW, zeroing)."""
        # The loss is already weighted for the whole global batch: DeepSpeed must not divide it by the
        # accumulation count again (scale_wrt_gas). The boundary is set per optimizer step, not by a counter: a
        # last, short global batch has fewer micro-batches.
        self.ctx.accelerator.deepspeed_engine_wrapped.backward(loss, sync_gradients=last_micro_batch,
                                                               scale_wrt_gas=False)

    def step(self, optimizer, params: list, max_grad_norm: float) -> float:
        """Already stepped in the last micro-batch's backward: only its gradient norm is left to read."""
        return float(whole(torch.as_tensor(self.engine.get_global_grad_norm())))

    def resumable_problem(self, model: torch.nn.Module) -> str | None:
        return None

    def record(self) -> dict:
        return {"deepspeed": {"zero_stage": 3, "config_values_replaced": self.replaced}}

    def state_out(self, model: torch.nn.Module, optimizer) -> FullState | None:
        """Gathered one tensor at a time on every rank (a collective); only rank 0 keeps a host copy."""
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        names = dict(zip(map(id, _params(optimizer)), optimizer_param_names(model, optimizer), strict=True))
        weights, state = {}, {}
        step = _step(optimizer)
        for p in _params(optimizer):
            full = safe_get_full_fp32_param(p)
            moments = {k: safe_get_full_optimizer_state(p, k) for k in _MOMENTS} if step else {}
            if self.ctx.is_main:
                weights[names[id(p)]] = full.detach().cpu()
                if step:  # AdamW keeps no state before its first step
                    state[names[id(p)]] = {"step": torch.tensor(float(step)),
                                           **{k: v.detach().cpu() for k, v in moments.items()}}
        if not self.ctx.is_main:
            return None
        keys = optimizer.__dict__[_GROUP_KEYS]
        groups = [{**{k: group[k] for k in keys}, "params": [names[id(p)] for p in members]}
                  for group, members in zip(optimizer.param_groups, original_param_groups(optimizer), strict=True)]
        return FullState(weights, {"state": state, "param_groups": groups})

    def state_in(self, model: torch.nn.Module, optimizer, read: ReadState) -> dict:
        """Rank 0 reads and checks the file; its tensors are broadcast one at a time and each rank keeps its
        partitions (one whole copy in host memory, as for FSDP2)."""
        names = optimizer_param_names(model, optimizer)
        held = FullState({}, {})

        def read_on_rank0():
            info, state = read(names)
            held.weights, held.optimizer = state.weights, state.optimizer
            steps = sorted({float(v["step"]) for v in state.optimizer["state"].values()})
            if len(steps) > 1:
                raise BenchmarkError(f"the saved optimizer state has parameters at different steps ({steps}); "
                                     "DeepSpeed steps all of them together: delete the training state and rerun.")
            groups = [{k: v for k, v in g.items() if k != "params"} for g in state.optimizer["param_groups"]]
            return info, groups, steps[0] if steps else None

        info, groups, step = self.ctx.from_rank0(read_on_rank0)
        for saved, group in zip(groups, optimizer.param_groups, strict=True):
            group.update(saved)
        if step is not None:
            _create_moments(optimizer, step)
        for name, p in zip(names, _params(optimizer), strict=True):
            self._restore_param(p, held.weights.get(name), held.optimizer.get("state", {}).get(name, {}), step)
        return info

    def _restore_param(self, p, weight, saved: dict, step) -> None:
        """One parameter's master copy, forward copy and (after a first step) Adam moments from rank 0's tensors."""
        import deepspeed
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        value = self._from_rank0_tensor(p, weight)
        safe_set_full_fp32_param(p, value)  # the master copy the optimizer steps
        with deepspeed.zero.GatheredParameters([p], modifier_rank=0), torch.no_grad():
            if self.ctx.is_main:  # the copy the forward uses (bf16 in DeepSpeed's bf16 mode)
                p.data.copy_(value.to(p.dtype))
        if step is not None:
            for k in _MOMENTS:  # a parameter without state: AdamW's zero moments
                safe_set_full_optimizer_state(p, self._from_rank0_tensor(p, saved.get(k, torch.zeros(p.ds_shape))), k)

    def _from_rank0_tensor(self, p, tensor) -> torch.Tensor:
        """Rank 0's whole ``tensor`` for parameter ``p``, on every rank."""
        t = (tensor.to(self.ctx.device, torch.float32) if self.ctx.is_main
             else torch.empty(p.ds_shape, dtype=torch.float32, device=self.ctx.device))
        torch.distributed.broadcast(t, src=0)
        return t


def _params(optimizer) -> list[torch.nn.Parameter]:
    return [p for group in original_param_groups(optimizer) for p in group]


def _step(optimizer) -> int:
    """Optimizer steps DeepSpeed's partitions have taken (AdamW's ``step``: the same for all of them)."""
    steps = {int(v["step"]) for v in optimizer.state.values() if "step" in v}
    return steps.pop() if len(steps) == 1 else 0


def _create_moments(optimizer, step: float) -> None:
    """AdamW's state on DeepSpeed's flat partitions, created as its first step would (then filled per parameter)."""
    zero = _params(optimizer)[0]._z3_optimizer
    for flat in zero.fp32_partitioned_groups_flat:
        zero.optimizer.state[flat] = {"step": torch.tensor(step), "exp_avg": torch.zeros_like(flat),
                                      "exp_avg_sq": torch.zeros_like(flat)}

