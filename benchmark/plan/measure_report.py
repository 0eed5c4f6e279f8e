"""``plan --measure``'s answer: the rows with their ratios to the plan, as a table and as JSON (keys in
docs/plan.md, "Measured"). The JSON says ``random_init: true``; the leaderboard refuses any file that does, and
it is never written into a results folder."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from ..errors import BenchmarkError
from ..schema import Regime, results_root

KIND = "plan-measure"


def _ratio(measured, predicted):
    return None if measured is None or not predicted else measured / predicted


def predicted_train_gb(row, micro_batch: int, checkpointing: bool) -> float:
    """The plan's peak for one device at this micro-batch: weights + gradients + optimizer + activations."""
    m = row.memory.to_gb()
    per = m["activations_per_sample_checkpointed" if checkpointing else "activations_per_sample"]
    state = m["weights"] + m["gradients"] + m["optimizer"] + m["gathered_weights"] + m["gathered_gradients"]
    return state + micro_batch * per


def train_record(plan, regime: str, raw: dict, *, peak_tflops: float | None, mfu: float, engine: str = "single",
                 processes: int = 1) -> dict:
    """One trained row: throughput, achieved FLOP/s and MFU from the plan's FLOPs, ratios to the plan's ``engine``
    row. With several processes each trains one micro-batch per step: throughput and FLOP/s are the group's, MFU
    is over all its devices' peak, memory the largest process's against the plan's per-device figure."""
    if "skipped" in raw:
        return raw
    row = plan.regimes[regime].engines[engine]
    flops = plan.flops.train_per_sample[Regime(regime).recorded]
    mb, step = raw["micro_batch"], statistics.median(raw["step_seconds"])
    group = mb * processes
    achieved = flops * group / step / 1e12
    predicted_s = flops * mb / (peak_tflops * 1e12 * mfu) if peak_tflops else None
    peak = raw["peak_gb"]
    measured_gb = peak["allocated"] if peak["allocated"] is not None else peak["rss_delta"]
    predicted_gb = predicted_train_gb(row, mb, raw["gradient_checkpointing"])
    return {**raw, "step_seconds_median": step, "samples_per_second": group / step,
            "tokens_per_second": group * raw["tokens_per_sample"] / step, "plan_flops_per_sample": flops,
            "achieved_tflops": achieved, "mfu": achieved / (peak_tflops * processes) if peak_tflops else None,
            "predicted_peak_gb": predicted_gb, "memory_ratio": _ratio(measured_gb, predicted_gb),
            "predicted_step_seconds": predicted_s, "time_ratio": _ratio(step, predicted_s)}


def scoring_record(plan, raw: dict, *, peak_tflops: float | None, mfu: float) -> dict:
    """The scoring rows with the plan's evaluation FLOPs and memory (weights + KV cache) beside them."""
    flops = plan.flops.eval_per_sample * raw["images"]
    shared = raw["prefix_shared"]
    predicted_s = flops / (peak_tflops * 1e12 * mfu) if peak_tflops else None
    peak = shared["peak_gb"]
    measured_gb = peak["allocated"] if peak["allocated"] is not None else peak["rss_delta"]
    predicted_gb = plan.regimes[Regime.ZERO_SHOT].engines["single"].peak_gb
    achieved = flops / shared["seconds"] / 1e12
    shared.update(plan_flops=flops, achieved_tflops=achieved, mfu=achieved / peak_tflops if peak_tflops else None,
                  predicted_seconds=predicted_s, time_ratio=_ratio(shared["seconds"], predicted_s),
                  predicted_peak_gb=predicted_gb, memory_ratio=_ratio(measured_gb, predicted_gb))
    return raw


def _fmt(x, spec=".2f"):
    return "-" if x is None else format(x, spec)


def _peak_text(peak: dict) -> str:
    if peak["allocated"] is not None:
        return f"{peak['allocated']:.1f} / {peak['reserved']:.1f}"
    return f"RSS+{_fmt(peak['rss_delta'])}"


def render_measured(record: dict) -> str:
    """The measured rows as a table, under a line saying what was measured and that it is random-init."""
    from tabulate import tabulate

    rows = []
    for regime, r in record["training"].items():
        if "skipped" in r:
            rows.append([regime, "skipped: " + r["skipped"]] + [""] * 10)
            continue
        rows.append([regime, f"{r['micro_batch']}" + (" ckpt" if r["gradient_checkpointing"] else ""),
                     _fmt(r["step_seconds_median"], ".3f"), _fmt(r["samples_per_second"]),
                     _fmt(r["tokens_per_second"], ".0f"), _fmt(r["achieved_tflops"], ".3f"), _fmt(r["mfu"]),
                     _peak_text(r["peak_gb"]), _fmt(r["predicted_peak_gb"]), _fmt(r["memory_ratio"]),
                     _fmt(r["predicted_step_seconds"], ".3f"), _fmt(r["time_ratio"])])
    sc = record["scoring"]
    for name in ("prefix_shared", "one_forward_per_class"):
        r = sc[name]
        rows.append([f"score {name}", f"{sc['images']} img x {sc['classes']} cl", _fmt(r["seconds"], ".3f"),
                     _fmt(sc["images"] / r["seconds"]), "", _fmt(r.get("achieved_tflops"), ".3f"),
                     _fmt(r.get("mfu")), _peak_text(r["peak_gb"]), _fmt(r.get("predicted_peak_gb")),
                     _fmt(r.get("memory_ratio")), _fmt(r.get("predicted_seconds"), ".3f"), _fmt(r.get("time_ratio"))])
    d = record["device"]
    group = record.get("processes", 1)
    where = d["name"] if group == 1 else f"{group} x {d['name']}, {group} processes, engine {record['engine']}"
    head = [f"measured ({KIND}, RANDOM-INIT weights: speed and memory only, never results) on {where}, "
            f"{record['dtype']}; {record['config_source']}",
            f"memory: {record['memory_method']}",
            f"scoring: prefix-shared {sc['speedup']:.1f}x faster than one forward per class; same predictions: "
            f"{sc['same_predictions']} (max |log-prob difference| {sc['max_abs_logprob_difference']:.2g})"]
    headers = ["row", "micro", "step s", "samples/s", "tokens/s", "TFLOP/s", "MFU",
               "peak GB (alloc/resv)" if d["type"] == "cuda" else "peak GB", "plan GB", "mem ratio", "plan s",
               "time ratio"]
    return "\n".join([*head, tabulate(rows, headers=headers, disable_numparse=True)])


def refuse_results_folder(out: Path) -> Path:
    """``out`` resolved, unless it lies in the results folder (random-init numbers must never sit among results)."""
    out, root = Path(out).resolve(), results_root().resolve()
    if out == root or root in out.parents:
        raise BenchmarkError(f"--measure-out {out}: inside the results folder {root}; measurements on random "
                             "weights are never results: write them elsewhere (default ./plan-measure/).")
    return out


def write_json(record: dict, out: Path) -> Path:
    out = refuse_results_folder(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    tmp.replace(out)
    return out
