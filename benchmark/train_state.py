"""Resumable training state on disk: safetensors for tensors, JSON for everything else, never a pickle.

``train_state.json`` is the commit point: it holds the step, data position, losses, scheduler state and the
optimizer's hyper-parameters, and names the tensor file written just before it
(``train_state-step<k>.safetensors``: trained weights, optimizer moments, RNG state) with its SHA-256. A kill
between the two writes leaves the previous pair intact; tensor files no JSON names are removed.

The file holds whole tensors in the layout one process has (optimizer state keyed by parameter index, the JSON
naming each index's parameter), whichever engine wrote it: ``distributed`` gathers sharded (FSDP2, DeepSpeed
ZeRO-3) state for the write and hands it back out on resume, so a state written by 1 process, DDP, FSDP2 or
DeepSpeed resumes under any of them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from . import distributed
from .integrity import CorruptFileError, load_safetensors, read_sealed_json, seal, sha256_file
from .results import atomic_write_json, atomic_write_with

FORMAT = 1
_TENSOR_FILE = re.compile(r"^train_state-step\d+\.safetensors$")


def tensor_files(path: Path) -> list[Path]:
    return sorted(p for p in Path(path).parent.glob("train_state-step*.safetensors") if _TENSOR_FILE.match(p.name))


def save(path: Path, adapter, optimizer, scheduler, losses, supervised: int, step: int, micro: int) -> None:
    """Write the state after optimizer step ``step`` (``micro`` batches seen) to ``path`` (a ``.json`` file).

    Every process calls this: sharded weights are gathered whole (see ``distributed.training_state``), and rank 0
    writes them in the layout one process has, so any engine and number of processes can resume the file.
    """
    path = Path(path)
    got = distributed.current().training_state(adapter.model, optimizer)
    if got is None:  # not rank 0: it writes
        return
    weights, opt = got
    tensors = {f"param.{k}": v.detach().cpu().contiguous() for k, v in weights.items()}
    scalars: dict[str, dict] = {}
    for idx, entry in opt["state"].items():
        for name, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    tensors["rng.torch"] = torch.get_rng_state()
    name = f"train_state-step{step:08d}.safetensors"
    atomic_write_with(path.parent / name, lambda tmp: save_file(tensors, str(tmp)))
    state = {
        "format": FORMAT, "tensors": name, "tensors_sha256": sha256_file(path.parent / name),
        "step": step, "micro": micro, "supervised": supervised, "losses": [float(x) for x in losses],
        "scheduler": scheduler.state_dict(), "param_groups": opt["param_groups"], "optimizer_scalars": scalars,
        # which parameter each optimizer index is: checked on resume, whichever engine wrote or reads the file
        "optimizer_params": distributed.optimizer_param_names(adapter.model, optimizer),
    }
    json.dumps(state)  # fails here, not silently via str(), if a torch version adds a non-JSON field
    atomic_write_json(path, seal(state))
    for old in tensor_files(path):
        if old.name != name:
            old.unlink(missing_ok=True)


def read(path: Path) -> tuple[dict, dict]:
    """The JSON part and the tensors, both checked; :class:`CorruptFileError` if anything does not match."""
    path = Path(path)
    state = read_sealed_json(path)
    name = state.get("tensors")
    if state.get("format") != FORMAT or not isinstance(name, str) or not _TENSOR_FILE.match(name):
        raise CorruptFileError(path, "not a training state written by this version of projbench")
    return state, load_safetensors(path.parent / name, state.get("tensors_sha256"))


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


def load(path: Path, adapter, optimizer, scheduler) -> dict:
    """Restore weights, optimizer, schedule and RNG in place; returns step, micro, losses, supervised.

    Every process calls this; ``distributed.restore_training_state`` decides which of them read the file.
    """
    path = Path(path)
    model = adapter.model

    def read_whole() -> tuple[dict, dict, dict]:
        state, tensors = read(path)
        trained = set(distributed.trained_parameters(model))
        weights = {k[len("param."):]: v for k, v in tensors.items() if k.startswith("param.")}
        if set(weights) != trained:
            raise CorruptFileError(path, "its trained weights do not match this model and regime")
        names = state.get("optimizer_params")  # absent in files of earlier versions (one layout then)
        if names is not None and names != distributed.optimizer_param_names(model, optimizer):
            raise CorruptFileError(path, "its optimizer state is for other parameters than this model and regime")
        current = optimizer.state_dict()["param_groups"]
        groups = []
        for old, cur in zip(state["param_groups"], current, strict=True):
            # JSON has no tuples: give back the types the optimizer uses (betas).
            groups.append({k: tuple(v) if isinstance(cur.get(k), tuple) else v for k, v in old.items()})
        opt_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optim."):
                _, idx, name = key.split(".", 2)
                opt_state.setdefault(int(idx), {})[name] = value
        for idx, entries in state["optimizer_scalars"].items():
            opt_state.setdefault(int(idx), {}).update(entries)
        info = {k: state[k] for k in ("step", "micro", "losses", "supervised", "scheduler")}
        info["rng"] = tensors["rng.torch"].tolist()
        return info, weights, {"state": opt_state, "param_groups": groups}

    info = distributed.current().restore_training_state(model, optimizer, read_whole)
    scheduler.load_state_dict(info["scheduler"])
    torch.set_rng_state(torch.tensor(info["rng"], dtype=torch.uint8))
    return {k: info[k] for k in ("step", "micro", "losses", "supervised")}
