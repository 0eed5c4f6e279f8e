"""Resumable training state on disk: safetensors for tensors, JSON for everything else, never a pickle.

``train_state.json`` is the commit point: it holds the step, data position, losses, scheduler state and the
optimizer's hyper-parameters, and names the tensor file written just before it
(``train_state-step<k>.safetensors``: trained weights, optimizer moments, RNG state) with its SHA-256. A kill
between the two writes leaves the previous pair intact; tensor files no JSON names are removed.

The file holds whole tensors in the layout one process has, whichever engine wrote it: optimizer state keyed by
parameter index, the JSON naming each index's parameter (``optimizer_params``). Engines hand over and take back
the full state keyed by parameter name (``FullState``); this module is the one place that maps names to the
file's indices and back, so a state written by 1 process, DDP, FSDP2 or DeepSpeed ZeRO-3 resumes under any of
them, and files of earlier versions (without ``optimizer_params``, one process's layout) are still read.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch

from benchmark.distributed.engines import Engine, FullState
from benchmark.distributed.tensors import trained_parameters
from benchmark.errors import BenchmarkError
from benchmark.storage.integrity import (
    CorruptFileError,
    load_safetensors,
    read_sealed_json,
    seal,
    sha256_file,
)
from benchmark.storage.results import atomic_save_tensors, atomic_write_json

FORMAT = 1
_TENSOR_FILE = re.compile(r"^train_state-step\d+\.safetensors$")


def tensor_files(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).parent.glob("train_state-step*.safetensors") if _TENSOR_FILE.match(p.name))


# -- the optimizer's two layouts ---------------------------------------------------------------------------------
def optimizer_state_by_index(by_name: dict, names: list[str]) -> dict:
    """torch's full-state layout (parameters keyed by name) -> ``Optimizer.state_dict()``'s (by index)."""
    index = {n: i for i, n in enumerate(names)}
    return {"state": {index[n]: v for n, v in by_name["state"].items()},
            "param_groups": [{**g, "params": [index[n] for n in g["params"]]} for g in by_name["param_groups"]]}


def optimizer_state_by_name(by_index: dict, names: list[str]) -> dict:
    """The inverse of :func:`optimizer_state_by_index`."""
    return {"state": {names[int(i)]: v for i, v in by_index["state"].items()},
            "param_groups": [{**g, "params": [names[int(i)] for i in g["params"]]} for g in by_index["param_groups"]]}


# -- writing -----------------------------------------------------------------------------------------------------
def save(path: Path, state: FullState | None, *, scheduler, losses, supervised: int, step: int) -> None:
    """Write ``state`` (an engine's ``state_out``: None on ranks other than 0, which write nothing) after optimizer
    step ``step`` to ``path`` (a ``.json`` file), with the schedule, losses and this process's RNG state."""
    if state is None:
        return
    path = Path(path)
    names = [n for group in state.optimizer["param_groups"] for n in group["params"]]  # torch's index order
    opt = optimizer_state_by_index(state.optimizer, names)
    tensors = {f"param.{k}": v.detach().cpu().contiguous() for k, v in state.weights.items()}
    scalars: dict[str, dict] = {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    diverged = sorted(k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all()))
    if diverged:  # never written: it would be refused on resume, and the results of such weights mean nothing
        raise BenchmarkError(
            f"Training diverged before step {step}: {', '.join(diverged[:3])} hold NaN or Inf. Nothing was saved; "
            "lower the learning rate (--lr-proj, --lr-e2e) or train in float32 (--dtype float32), and run again.")
    name = f"train_state-step{step:08d}.safetensors"
    atomic_save_tensors(path.parent / name, tensors)
    record = {
        "format": FORMAT, "tensors": name, "tensors_sha256": sha256_file(path.parent / name),
        "step": step, "micro": step, "supervised": supervised, "losses": [float(x) for x in losses],
        "scheduler": scheduler.state_dict(), "param_groups": opt["param_groups"], "optimizer_scalars": scalars,
        # which parameter each optimizer index is: checked on resume, whichever engine wrote or reads the file
        "optimizer_params": names,
    }
    json.dumps(record)  # fails here, not silently via str(), if a torch version adds a non-JSON field
    atomic_write_json(path, seal(record))
    for old in tensor_files(path):
        if old.name != name:
            old.unlink(missing_ok=True)


# -- reading -----------------------------------------------------------------------------------------------------
def read(path: Path) -> tuple[dict, dict]:
    """The JSON part and the tensors, both checked; :class:`CorruptFileError` if anything does not match."""
    path = Path(path)
    state = read_sealed_json(path)
    name = state.get("tensors")
    if state.get("format") != FORMAT or not isinstance(name, str) or not _TENSOR_FILE.match(name):
        raise CorruptFileError(path, "not a training state written by this version of projbench")
    tensors = load_safetensors(path.parent / name, state.get("tensors_sha256"))
    problem = _counters_problem(state) or next(
        (f"tensor {k!r} holds NaN or Inf" for k, v in sorted(tensors.items())
         if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if problem:
        raise CorruptFileError(path, problem)
    return state, tensors


def _counters_problem(state: dict) -> str | None:
    """Why the recorded counters and losses cannot be a real training state's, or None."""
    for key in ("step", "micro", "supervised"):
        value = state.get(key)
        if type(value) is not int or value < 0:
            return f"recorded {key} {value!r} is not a count"
    losses = state.get("losses")
    if not isinstance(losses, list) or not all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses):
        return "recorded losses are not a list of finite numbers"
    return None


def _shape_problem(tensors: dict, params: dict, names: list[str]) -> str | None:
    """Why saved weights or optimizer moments do not have the shapes of the parameters they belong to, or None.
    (A tensor of another shape would be broadcast into the parameter, silently.)"""
    def shape(p):  # DeepSpeed ZeRO-3 keeps the full shape aside; FSDP2's DTensor reports the full one
        return tuple(getattr(p, "ds_shape", None) or p.shape)

    for key, value in sorted(tensors.items()):
        if key.startswith("param."):
            name = key[len("param."):]
        elif key.startswith("optim.") and value.dim() > 0:  # moments; AdamW's per-parameter step is a scalar
            index = key.split(".", 2)[1]
            name = names[int(index)] if index.isdigit() and int(index) < len(names) else None
            if name is None:
                return f"optimizer tensor {key!r} belongs to no parameter"
        else:
            continue
        if tuple(value.shape) != shape(params[name]):
            return f"{key!r} has shape {tuple(value.shape)}, but the parameter {name!r} has {shape(params[name])}"
    return None


def check(path: Path) -> str | None:
    """None if the state at ``path`` is intact, else why not."""
    try:
        read(path)
    except CorruptFileError as exc:
        return str(exc)
    return None


def remove(path: Path) -> None:
    Path(path).unlink(missing_ok=True)
    for p in tensor_files(path):
        p.unlink(missing_ok=True)


def read_full(path: Path, model: torch.nn.Module, names: list[str], max_step: int | None = None
              ) -> tuple[dict, FullState]:
    """``(info, FullState)`` of the file, checked against ``model``'s trained weights (names and shapes), the
    optimizer's parameter ``names`` (torch's order) and the run's planned ``max_step``; ``info``: step, micro,
    losses, supervised, scheduler, rng."""
    path = Path(path)
    state, tensors = read(path)
    weights = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
    params = trained_parameters(model)
    if set(weights) != set(params):
        raise CorruptFileError(path, "its trained weights do not match this model and regime")
    saved_names = state.get("optimizer_params", names)  # absent in files of earlier versions (one layout then)
    if saved_names != names:
        raise CorruptFileError(path, "its optimizer state is for other parameters than this model and regime")
    problem = _shape_problem(tensors, params, names)
    if problem:
        raise CorruptFileError(path, problem)
    if max_step is not None and state["step"] > max_step:
        raise CorruptFileError(path, f"it records step {state['step']}, but this run plans {max_step} steps")
    by_index: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, entry = key.split(".", 2)
            by_index.setdefault(int(idx), {})[entry] = value
    for idx, entries in state["optimizer_scalars"].items():
        by_index.setdefault(int(idx), {}).update(entries)
    # JSON has no tuples: give back the type AdamW uses for its only list-like hyper-parameter (betas).
    groups = [{k: tuple(v) if k != "params" and isinstance(v, list) else v for k, v in g.items()}
              for g in state["param_groups"]]
    info = {k: state[k] for k in ("step", "micro", "losses", "supervised", "scheduler")}
    info["rng"] = tensors["rng.torch"].tolist()
    return info, FullState(weights, optimizer_state_by_name({"state": by_index, "param_groups": groups}, names))


def load(path: Path, engine: Engine, *, model: torch.nn.Module, optimizer, scheduler, max_step: int | None = None
         ) -> dict:
    """Restore weights, optimizer, schedule and RNG in place; returns step, micro, losses, supervised.

    Every process calls this; ``engine.state_in`` decides which of them read the file. A state that records more
    than the run's ``max_step`` optimizer steps is refused (:class:`CorruptFileError`) before anything is restored.
    """
    info = engine.state_in(model, optimizer, lambda names: read_full(path, model, names, max_step))
    scheduler.load_state_dict(info["scheduler"])
    torch.set_rng_state(torch.tensor(info["rng"], dtype=torch.uint8))
    return {k: info[k] for k in ("step", "micro", "losses", "supervised")}
