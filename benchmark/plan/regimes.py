"""The table of the plan: for each regime (zero-shot, FT-Proj, FT-E2E, FT-E2E with LoRA) and each engine, the
memory per GPU, whether it fits, the recommended micro-batch and the wall hours."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ..schema import Regime
from .hardware import GB, Gpus
from .memory import Activations, Gathered, Memory, engines_on, gpus_of
from .micro_batch import recommend
from .result import EngineRow, RegimeRow
from .timing import SECONDS_PER_HOUR, Clock
from .workload import Workload

REGIMES = (Regime.ZERO_SHOT, Regime.FT_PROJ, Regime.FT_E2E, Regime.FT_E2E_LORA)


@dataclass(frozen=True)
class Workings:
    """What every row is computed from: counts of the model and the run's settings."""

    parameters: dict[str, int]
    lora: int
    train_flops: dict[str, int]       # per trained regime (ft-proj, ft-e2e), one sample, forward + backward
    eval_flops: int                   # per test image
    activations: dict[str, Activations]  # per trained regime, one sample
    kv_cache: float                   # bytes of class scoring's KV cache
    gathered: dict[str, Gathered]     # per trained regime: what a sharded engine holds whole at its peak
    dtype_bytes: int
    micro_batch: int | None           # forced by the user, else the largest that fits


def trained_parameters(regime: str, w: Workings) -> int:
    params, lora = w.parameters, w.lora
    return {Regime.ZERO_SHOT: 0, Regime.FT_PROJ: params["projector"],
            Regime.FT_E2E: params["projector"] + params["llm"], Regime.FT_E2E_LORA: params["projector"] + lora}[regime]


def engine_row(engine: str, w: Workings, *, hw: Gpus, regime: str, trained: int, hours: float) -> EngineRow:
    """One engine's row: zero-shot holds the weights and the KV cache; training adds gradients, Adam state and
    the activations at the largest micro-batch that fits (or of one checkpointed sample if none does)."""
    base = Regime(regime).recorded
    act = None if regime == Regime.ZERO_SHOT else w.activations[base]
    mem = Memory.model(engine, hw, total=w.parameters["total"], trained=trained, dtype_bytes=w.dtype_bytes,
                       kv=w.kv_cache, activations=act, gathered=w.gathered.get(regime))
    if act is None:
        need = mem.state + mem.kv_cache_scoring
        return EngineRow(mem, need / GB, need <= hw.usable_bytes, hw.memory_gb, None, hours)
    rec = recommend(hw.usable_bytes - mem.state, act, regime=base, n_gpus=gpus_of(engine, hw),
                    wanted=w.micro_batch)
    need = mem.state + (rec.activations_at_micro_batch if rec else act.checkpointed)
    return EngineRow(mem, need / GB, rec is not None, hw.memory_gb, rec, hours)


def regime_row(regime: str, w: Workings, *, hw: Gpus, clock: Clock, work: Workload) -> RegimeRow:
    base = Regime(regime).recorded
    train_f = 0 if regime == Regime.ZERO_SHOT else w.train_flops[base]
    seconds_train = clock.seconds(work.n_train * train_f)
    seconds_eval = clock.seconds(work.n_test * w.eval_flops)
    trained = trained_parameters(regime, w)
    engines = {e: engine_row(e, w, hw=hw, regime=regime, trained=trained,
                             hours=clock.hours_on(seconds_train + seconds_eval, gpus_of(e, hw)))
               for e in engines_on(hw)}
    return RegimeRow(trainable_parameters=trained, flops_per_train_sample=train_f or None,
                     flops_per_eval_sample=w.eval_flops,
                     hours_train=seconds_train / SECONDS_PER_HOUR if train_f else None,
                     hours_eval=seconds_eval / SECONDS_PER_HOUR, engines=engines)


def sharded_gpus_needed(e: EngineRow, act: Activations | None, hw: Gpus) -> int | None:
    """GPUs of ``hw``'s kind over which a sharded engine (FSDP / ZeRO-3) fits one checkpointed sample of this row;
    None if no count would (the activations alone overflow one GPU)."""
    per_sample = act.checkpointed if act is not None else e.memory.kv_cache_scoring
    room = hw.usable_bytes - per_sample
    if room <= 0:
        return None
    return max(2, math.ceil(e.memory.state / room))


def advice(regime: str, rows: dict[str, RegimeRow], *, hw: Gpus, w: Workings) -> dict[str, str]:
    """For each engine of ``regime`` that does not fit, one line saying what would (sharding, LoRA)."""
    out = {}
    base = Regime(regime).recorded
    act = None if regime == Regime.ZERO_SHOT else w.activations[base]
    single = rows[regime].engines["single"]
    fitting = [e for e, row in rows[regime].engines.items() if row.fits]
    for engine, row in rows[regime].engines.items():
        if row.fits:
            continue
        if fitting:
            ways = ["/".join(fitting) + " here"]
        else:
            n = sharded_gpus_needed(single, act, hw)
            ways = [f"{n}x{hw.name} fsdp/zero3 + checkpointing"] if n else []
        if regime == Regime.FT_E2E and rows[Regime.FT_E2E_LORA].engines[engine].fits:
            ways.append("LoRA (--lora)")
        out[engine] = "would fit: " + (", or ".join(ways) if ways else "a GPU with more memory")
    return out


def regime_table(w: Workings, *, hw: Gpus, clock: Clock, work: Workload) -> dict[str, RegimeRow]:
    rows = {r: regime_row(r, w, hw=hw, clock=clock, work=work) for r in REGIMES}
    for r in REGIMES:
        lines = advice(r, rows, hw=hw, w=w)
        if lines:
            rows[r] = replace(rows[r], engines={e: replace(row, instead=lines.get(e))
                                                for e, row in rows[r].engines.items()})
    return rows
