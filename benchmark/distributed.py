"""Processes and devices: the only module that knows a run can span several processes.

A plain ``python -m benchmark run`` is one process and everything here is a no-op. Started by ``torchrun`` or
``accelerate launch`` (both set ``WORLD_SIZE``), the run becomes one rank of a group managed by accelerate (gloo
on CPU, nccl on GPUs). Training, feature extraction, evaluation and probes ask this module for their share of the
work (``share``), combine the shares (``gather``) and let only rank 0 write files (``is_main``); the engine that
holds the trained weights (DDP, accelerate's FSDP, PyTorch FSDP2, or DeepSpeed ZeRO-3 through accelerate) is chosen
in ``setup`` (DeepSpeed must be known when the process group is made) and ``wrap``. Everything else is written as if
there were one process.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
from dataclasses import dataclass
from typing import Any

import torch

from .errors import BenchmarkError

ENGINES = ("auto", "ddp", "fsdp2", "deepspeed")  # how multi-process training holds the trained weights

# DeepSpeed builds its ops at install time unless told not to; its setup imports torch, so build isolation would
# fetch a second torch. Its CPU communication op is compiled on first use (needs a C++ compiler).
DEEPSPEED_INSTALL = "DS_BUILD_OPS=0 pip install --no-build-isolation 'deepspeed>=0.19'"  # the `deepspeed` extra


@dataclass
class Context:
    """This process's place in the run. One process: rank 0 of 1, no accelerator."""

    rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    accelerator: Any = None
    deepspeed: bool = False  # training runs in DeepSpeed ZeRO-3 through accelerate (set up by ``setup``)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str:
        return self.accelerator.state.distributed_type.value if self.accelerator is not None else "NO"

    @property
    def sharded_by_accelerate(self) -> bool:
        """accelerate runs an FSDP config (GPUs only: it ignores FSDP on CPU) or DeepSpeed (also on CPU, ``setup``)."""
        return self.backend in ("FSDP", "DEEPSPEED")

    # -- splitting and combining work -----------------------------------------------------------------------
    def share(self, n: int) -> range:
        """This rank's contiguous block of ``range(n)``; blocks in rank order cover it exactly."""
        per, extra = divmod(n, self.world_size)
        start = self.rank * per + min(self.rank, extra)
        return range(start, start + per + (1 if self.rank < extra else 0))

    def gather(self, items: list) -> list:
        """Every rank's list, concatenated in rank order, on every rank."""
        if not self.distributed:
            return list(items)
        from accelerate.utils import gather_object

        return list(gather_object(list(items)))

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank (rank 0 decides, e.g. whether a cache entry is reusable)."""
        if not self.distributed:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def run_split(self, jobs: list) -> list:
        """Run zero-argument ``jobs`` round-robin over the ranks; every rank gets all results in job order."""
        mine = [(i, job()) for i, job in enumerate(jobs) if i % self.world_size == self.rank]
        return [r for _, r in sorted(self.gather(mine), key=lambda x: x[0])]

    def sum(self, value: float) -> float:
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(t)
        return float(t.item())

    def barrier(self) -> None:
        if self.distributed:
            self.accelerator.wait_for_everyone()

    # -- training -------------------------------------------------------------------------------------------
    def wrap(self, module: torch.nn.Module, engine: str = "auto", shard_modules=()) -> torch.nn.Module:
        """The training module as the engine runs it; identity in one process.

        ``ddp``: accelerate's DistributedDataParallel (gradients all-reduced, every rank holds all weights).
        ``fsdp2``: PyTorch's ``fully_shard`` on each of ``shard_modules`` and on the root (parameters, gradients
        and optimizer state sharded over the ranks); it runs on CPU/gloo, where accelerate ignores its FSDP plugin.
        ``auto``: what accelerate was launched with (its FSDP config on GPUs), else DDP.
        DeepSpeed needs the optimizer as well: ``wrap_deepspeed``.
        """
        if not self.distributed:
            return module
        if engine == "fsdp2":
            from torch.distributed.fsdp import fully_shard

            for m in shard_modules:
                fully_shard(m)
            fully_shard(module)
            return module
        return self.accelerator.prepare_model(module)

    def wrap_deepspeed(self, module: torch.nn.Module, optimizer, batch: DeepSpeedBatch):
        """``module`` and its client ``optimizer`` as one DeepSpeed ZeRO-3 engine, made by ``accelerator.prepare``.

        projbench owns the batch layout, clipping and precision, so they are written into the DeepSpeed config
        (values of an accelerate config file that differ are replaced: returned, for the record). The engine then
        holds 1 / processes of every parameter; ``backward`` drives it.
        """
        config = self.accelerator.state.deepspeed_plugin.deepspeed_config
        # What was replaced is recorded against the config as launched, not as the previous training left it.
        given = self.__dict__.setdefault("deepspeed_config_given", copy.deepcopy(config))
        replaced = _overwrite(copy.deepcopy(given), deepspeed_config(batch))
        _overwrite(config, deepspeed_config(batch))
        # accelerate warns when its own accumulation count differs from DeepSpeed's; it is only informative here.
        self.accelerator.gradient_accumulation_steps = batch.accumulation_steps
        # DeepSpeed replaces the optimizer's parameters by flat partitions: keep the order torch numbers them in
        # (and each group's hyper-parameter names) for the one-process layout of saved training state.
        optimizer.__dict__[ORIGINAL_PARAMS] = [list(g["params"]) for g in optimizer.param_groups]
        optimizer.__dict__[_GROUP_KEYS] = [k for k in optimizer.param_groups[0] if k != "params"]
        engine, _ = self.accelerator.prepare(module, optimizer)
        return engine, replaced

    # DeepSpeed ZeRO-3 state in the one-process layout. Its optimizer steps projbench's AdamW on flat fp32
    # partitions, so the per-parameter view comes from DeepSpeed's tensor-fragment functions (whole tensors,
    # gathered on every rank) and the parameter order from the optimizer as it was built (ORIGINAL_PARAMS).
    def _deepspeed_training_state(self, model: torch.nn.Module, optimizer) -> tuple[dict, dict] | None:
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_optimizer_state

        params = original_param_groups(optimizer)
        names = {id(p): n for n, p in trained_parameters(model).items()}
        weights, state = {}, {}
        step = _deepspeed_step(optimizer)
        for i, p in enumerate(q for group in params for q in group):
            # Gathered one tensor at a time on every rank (a collective); only rank 0 keeps a host copy.
            whole = safe_get_full_fp32_param(p)
            moments = {k: safe_get_full_optimizer_state(p, k) for k in ("exp_avg", "exp_avg_sq")} if step else {}
            if self.is_main:
                weights[names[id(p)]] = whole.detach().cpu()
                if step:  # AdamW keeps no state before its first step
                    state[i] = {"step": torch.tensor(float(step)), **{k: v.detach().cpu() for k, v in moments.items()}}
        if not self.is_main:
            return None
        keys = optimizer.__dict__[_GROUP_KEYS]
        index, groups = 0, []
        for group, members in zip(optimizer.param_groups, params, strict=True):
            groups.append({**{k: group[k] for k in keys}, "params": list(range(index, index + len(members)))})
            index += len(members)
        return weights, {"state": state, "param_groups": groups}

    def _deepspeed_restore(self, model: torch.nn.Module, optimizer, read) -> dict:
        """Rank 0 reads and checks the file; its tensors are broadcast one at a time and each rank keeps its
        partitions (one whole copy in host memory, as for FSDP2)."""
        import deepspeed
        from deepspeed.utils import safe_set_full_fp32_param, safe_set_full_optimizer_state

        held = {"weights": {}, "opt_state": {}}  # rank 0's whole tensors, broadcast one at a time below

        def read_on_rank0():
            info, held["weights"], held["opt_state"] = read()
            steps = sorted({float(v["step"]) for v in held["opt_state"]["state"].values()})
            if len(steps) > 1:
                raise BenchmarkError(f"the saved optimizer state has parameters at different steps ({steps}); "
                                     "DeepSpeed steps all of them together: delete the training state and rerun.")
            groups = [{k: v for k, v in g.items() if k != "params"} for g in held["opt_state"]["param_groups"]]
            return info, groups, steps[0] if steps else None

        info, groups, step = self._from_rank0(read_on_rank0)
        weights, opt_state = held["weights"], held["opt_state"]
        for saved, group in zip(groups, optimizer.param_groups, strict=True):
            group.update(saved)
        params = [q for group in original_param_groups(optimizer) for q in group]
        names = {id(p): n for n, p in trained_parameters(model).items()}
        if step is not None:  # AdamW's state on DeepSpeed's flat partitions, created as its first step would
            zero = params[0]._z3_optimizer
            for flat in zero.fp32_partitioned_groups_flat:
                zero.optimizer.state[flat] = {"step": torch.tensor(step), "exp_avg": torch.zeros_like(flat),
                                              "exp_avg_sq": torch.zeros_like(flat)}

        def whole(p, tensor):  # rank 0's tensor, on every rank
            t = (tensor.to(self.device, torch.float32) if self.is_main
                 else torch.empty(p.ds_shape, dtype=torch.float32, device=self.device))
            torch.distributed.broadcast(t, src=0)
            return t

        for i, p in enumerate(params):
            value = whole(p, weights.get(names[id(p)]))
            safe_set_full_fp32_param(p, value)  # the master copy the optimizer steps
            with deepspeed.zero.GatheredParameters([p], modifier_rank=0), torch.no_grad():
                if self.is_main:  # the copy the forward uses (bf16 in DeepSpeed's bf16 mode)
                    p.data.copy_(value.to(p.dtype))
            if step is not None:
                saved = opt_state["state"].get(i, {}) if self.is_main else {}
                for k in ("exp_avg", "exp_avg_sq"):  # a parameter without state: AdamW's zero moments
                    safe_set_full_optimizer_state(p, whole(p, saved.get(k, torch.zeros(p.ds_shape))), k)
        return info

    def backward(self, loss: torch.Tensor, last_micro_batch: bool) -> None:
        """``loss.backward()``; under DeepSpeed the engine's backward, and its optimizer step after the last
        micro-batch (clipping, AdamW, zeroing the gradients: the caller then only steps the lr schedule)."""
        if not self.deepspeed or not self.distributed:
            loss.backward()
            return
        # The loss is already weighted for the whole global batch: DeepSpeed must not divide it by the
        # accumulation count again (scale_wrt_gas). The boundary is set per optimizer step, not by a counter: a
        # last, short global batch has fewer micro-batches.
        self.accelerator.deepspeed_engine_wrapped.backward(loss, sync_gradients=last_micro_batch,
                                                           scale_wrt_gas=False)

    def release(self) -> None:
        """Drop accelerate's references to the trained engine (its partitioned weights and optimizer state)."""
        if self.accelerator is not None:
            self.accelerator.free_memory()

    def no_sync(self, module: torch.nn.Module, last_micro_batch: bool):
        """Skip DDP's gradient all-reduce on every micro-batch but the last of an optimizer step (DeepSpeed: its
        accumulation boundary, set in ``backward``)."""
        if not self.distributed or last_micro_batch or self.deepspeed or not hasattr(module, "no_sync"):
            return contextlib.nullcontext()
        return module.no_sync()

    # -- resumable training state -----------------------------------------------------------------------------
    def resumable_problem(self, model: torch.nn.Module) -> str | None:
        """Why the mid-training state of ``model`` (as wrapped for training) cannot be saved whole here; None if
        it can. Whole tensors (one process, DDP) and FSDP2's DTensors can; accelerate's FSDP1 flat shards cannot."""
        if self.distributed and self.sharded_by_accelerate and not self.deepspeed and not is_sharded(model):
            return (f"accelerate's {self.backend} engine holds the trained weights in shards projbench cannot save "
                    "for a resume (it gathers PyTorch FSDP2's DTensors): set `fsdp_version: 2` in the accelerate "
                    "config (as configs/accelerate/*fsdp.yaml do), or pass --checkpoint-every 0 to train without "
                    "mid-training checkpoints")
        return None

    def training_state(self, model: torch.nn.Module, optimizer) -> tuple[dict, dict] | None:
        """The trained weights ``{name: tensor}`` and the optimizer state in torch's one-process layout
        (``{"state": {index: ...}, "param_groups": [...]}``), as whole tensors, on rank 0; None on other ranks.

        Whatever the engine, the result is what one process would hold, so a state saved by any engine can be
        resumed by any other. Sharded weights (FSDP2) are gathered with torch's distributed-checkpoint state-dict
        API (whole tensors offloaded to CPU on rank 0 only), DeepSpeed ZeRO-3 partitions with its own gathering
        functions: every rank must call this then.
        """
        if self.deepspeed and self.distributed:
            return self._deepspeed_training_state(model, optimizer)
        if not is_sharded(model):
            if not self.is_main:
                return None  # DDP: rank 0 holds everything already
            weights = {k: v.detach() for k, v in trained_parameters(model).items()}
            return weights, optimizer.state_dict()
        from torch.distributed.checkpoint import state_dict as dsd

        options = dsd.StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
        weights = dsd.get_model_state_dict(model, options=options)
        by_name = dsd.get_optimizer_state_dict(model, optimizer, options=options)
        if not self.is_main:
            return None
        return weights, optimizer_state_by_index(by_name, optimizer_param_names(model, optimizer))

    def restore_training_state(self, model: torch.nn.Module, optimizer, read) -> dict:
        """Load a saved state into ``model`` and ``optimizer`` on every rank; returns its ``info`` (step, losses...).

        ``read()`` returns ``(info, weights, optimizer_state)`` in :meth:`training_state`'s layout (``info``: small
        picklable values). Unsharded, every rank reads the file (each holds all weights, as DDP does). Sharded
        (FSDP2), only rank 0 reads and verifies it; its ``info`` and tensors are broadcast and each rank keeps its
        shard (``broadcast_from_rank0``): one whole copy in host memory, not one per rank, and every rank gets the
        very bytes rank 0 checked. A file rank 0 refuses is refused on every rank (none waits in a collective).
        DeepSpeed ZeRO-3: rank 0 reads and verifies the file and broadcasts it one tensor at a time; each rank keeps
        its partitions.
        """
        if self.deepspeed and self.distributed:
            return self._deepspeed_restore(model, optimizer, read)
        if not is_sharded(model):
            info, weights, opt_state = read()
            with torch.no_grad():
                for k, p in trained_parameters(model).items():
                    p.copy_(weights[k])
            optimizer.load_state_dict(opt_state)
            return info
        from torch.distributed.checkpoint import state_dict as dsd

        held = {"weights": {}, "by_name": {}}  # rank 0's whole tensors; the other ranks receive them below

        def read_on_rank0():
            info, held["weights"], opt_state = read()
            held["by_name"] = optimizer_state_by_name(opt_state, optimizer_param_names(model, optimizer))
            return info

        info = self._from_rank0(read_on_rank0)
        # strict=False for the model: the file holds the trained weights only, the frozen ones stay as built.
        dsd.set_model_state_dict(model, held["weights"], options=dsd.StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True, strict=False))
        dsd.set_optimizer_state_dict(model, optimizer, held["by_name"], options=dsd.StateDictOptions(
            full_state_dict=True, broadcast_from_rank0=True))
        return info

    def _from_rank0(self, fn):
        """``fn()`` run on rank 0 alone, its (small, picklable) result on every rank. If it raises, every rank
        raises (rank 0 its own exception, the others a BenchmarkError with its message): none is left waiting in a
        collective for a rank that gave up."""
        outcome, failure = None, None
        if self.is_main:
            try:
                outcome = ("ok", fn())
            except Exception as exc:  # noqa: BLE001 - re-raised below, on every rank
                outcome, failure = ("error", str(exc)), exc
        kind, value = self.broadcast(outcome)
        if kind == "error":
            raise failure if self.is_main else BenchmarkError(value)
        return value


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


def optimizer_param_names(model: torch.nn.Module, optimizer) -> list[str]:
    """The plain name of each optimizer parameter, in the order torch numbers them in a state dict."""
    names = {id(p): plain_name(n) for n, p in model.named_parameters()}
    params = [p for group in original_param_groups(optimizer) for p in group]
    missing = [i for i, p in enumerate(params) if id(p) not in names]
    if missing:
        raise BenchmarkError(f"optimizer parameters {missing} are not parameters of {type(model).__name__}.")
    return [names[id(p)] for p in params]


def optimizer_state_by_index(by_name: dict, names: list[str]) -> dict:
    """torch's distributed-checkpoint layout (parameters keyed by name) -> ``Optimizer.state_dict()``'s (by index)."""
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[n]: v for n, v in by_name["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]]}


def optimizer_state_by_name(by_index: dict, names: list[str]) -> dict:
    """The inverse of :func:`optimizer_state_by_index`."""
    return {"state": {names[int(i)]: v for i, v in by_index["state"].items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in by_index["param_groups"]]}


ORIGINAL_PARAMS = "_projbench_original_params"
_GROUP_KEYS = "_projbench_group_keys"


def original_param_groups(optimizer) -> list[list[torch.nn.Parameter]]:
    """The optimizer's parameters per group as it was built (DeepSpeed swaps them for its flat partitions)."""
    return optimizer.__dict__.get(ORIGINAL_PARAMS) or [list(g["params"]) for g in optimizer.param_groups]


def _deepspeed_step(optimizer) -> int:
    """Optimizer steps DeepSpeed's partitions have taken (AdamW's ``step``: the same for all of them)."""
    steps = {int(v["step"]) for v in optimizer.state.values() if "step" in v}
    return steps.pop() if len(steps) == 1 else 0


@dataclass(frozen=True)
class DeepSpeedBatch:
    """What projbench decides for a DeepSpeed run and writes into its config."""

    global_batch: int
    micro_batch: int
    accumulation_steps: int
    max_grad_norm: float
    dtype: torch.dtype


def deepspeed_config(b: DeepSpeedBatch) -> dict:
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


def _overwrite(config: dict, values: dict) -> dict:
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


def wants_deepspeed(engine: str) -> bool:
    """--engine deepspeed, or --engine auto under ``accelerate launch`` with a DeepSpeed config."""
    return engine == "deepspeed" or (engine == "auto" and _launched_with_deepspeed())


def _launched_with_deepspeed() -> bool:
    return os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true"


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None


_CURRENT = Context()


def current() -> Context:
    """The context ``setup`` made for this process (one process until then)."""
    return _CURRENT


def launched_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_gpus(processes_per_node: int, who: str, fix: str) -> None:
    """One process per GPU: refuse more processes on a machine than it has visible GPUs, naming ``fix``."""
    n = visible_gpus()
    if processes_per_node > n:
        raise BenchmarkError(f"{who + ' ' if who else ''}{processes_per_node} processes per node"
                             f"{'' if who else ' were launched'} but only {n} GPU(s) are visible: {fix}")


def setup(device: str = "auto", engine: str = "auto") -> Context:
    """Join the process group the launcher made (if any) and pick this rank's device; errors before any work."""
    global _CURRENT
    world = launched_world_size()
    deepspeed = world > 1 and wants_deepspeed(engine)
    if deepspeed and not deepspeed_installed():
        raise BenchmarkError(f"--engine {engine} needs DeepSpeed, which is not installed: {DEEPSPEED_INSTALL} "
                             "(or `make install-deepspeed`), or choose --engine fsdp2.")
    if world > 1 and engine in ("ddp", "fsdp2") and _launched_with_deepspeed():
        raise BenchmarkError(f"--engine {engine}: accelerate was launched with a DeepSpeed config; use --engine "
                             "deepspeed (or auto), or launch with another config.")
    cuda = torch.cuda.is_available()
    if device == "auto":
        device = "cuda" if cuda else "cpu"
    if device.startswith("cuda") and not cuda:
        raise BenchmarkError(f"--device {device}: no CUDA device is visible; use --device cpu.")
    on_cpu = not device.startswith("cuda")
    from .launch import check_environment

    check_environment(on_cpu)  # what accelerate launch passed on (precision, FSDP / DeepSpeed), if it started us
    if world == 1:
        if engine in ("fsdp2", "deepspeed"):  # said, not silently ignored: metrics.json records engine "single"
            print(f"[engine] one process: --engine {engine} has nothing to shard over; training runs unsharded "
                  "(recorded as engine single). Launch several processes with torchrun or accelerate launch to "
                  "shard.", file=sys.stderr)
        _CURRENT = Context(device=device)
        return _CURRENT
    local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    if not on_cpu:
        check_gpus(local, "", "launch at most that many (--nproc_per_node / --num_processes), or use --device cpu.")
    from accelerate import Accelerator

    if deepspeed:
        acc = _deepspeed_accelerator(on_cpu)
    else:
        # On a machine without CUDA a plain Accelerator() does not join the group: every rank would run alone.
        acc = Accelerator(cpu=on_cpu)
    if acc.num_processes != world:
        raise BenchmarkError(
            f"the launcher started {world} processes but accelerate joined {acc.num_processes}: each would run "
            "the whole job alone. Launch with `torchrun --nproc_per_node N -m benchmark run ...` or "
            "`accelerate launch --config_file F -m benchmark run ...`."
        )
    _CURRENT = Context(rank=acc.process_index, world_size=acc.num_processes, device=str(acc.device), accelerator=acc,
                       deepspeed=deepspeed)
    return _CURRENT


def _deepspeed_accelerator(on_cpu: bool):
    """An Accelerator running DeepSpeed ZeRO-3: the accelerate config's plugin (``accelerate launch``), else ZeRO-3
    with DeepSpeed's defaults (``torchrun ... --engine deepspeed``)."""
    from accelerate import Accelerator, DeepSpeedPlugin
    from accelerate.utils import InitProcessGroupKwargs

    plugin = None if _launched_with_deepspeed() else DeepSpeedPlugin(zero_stage=3)
    # accelerate picks no backend of its own for DeepSpeed on CPU: it would make the group through DeepSpeed yet
    # report 1 process on every rank (and DeepSpeed's batch check would fail). Naming gloo keeps both in step.
    handlers = [InitProcessGroupKwargs(backend="gloo")] if on_cpu else []
    acc = Accelerator(deepspeed_plugin=plugin, kwargs_handlers=handlers)
    stage = acc.state.deepspeed_plugin.deepspeed_config.get("zero_optimization", {}).get("stage")
    if stage != 3:
        raise BenchmarkError(f"DeepSpeed ZeRO stage {stage}: projbench drives ZeRO-3 only (the tested setup); set "
                             "zero_stage: 3 in the accelerate config (configs/accelerate/2x80gb-zero3.yaml), or use "
                             "--engine ddp for data parallelism.")
    # accelerate registers its ZeRO-3 config with transformers, which would then partition every model as it is
    # loaded. projbench loads whole models (zero-shot evaluation, probes) and DeepSpeed partitions the one it
    # trains when training starts.
    from transformers.integrations import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()
    return acc
