"""The plan as text: a header of counts and assumptions, then one table row per regime and engine."""

from __future__ import annotations

from .result import EngineRow, Plan

HEADERS = ["regime", "engine", "trained", "weights GB", "grads GB", "optim GB", "act/sample GB (ckpt)", "KV GB",
           "peak GB", "fits", "recommended", "hours"]


def _header(p: Plan) -> list[str]:
    g, pr, f, a = p.gpus, p.parameters, p.flops, p.assumptions
    return [f"plan: {p.model} on {p.task} with {g.count}x{g.name} "
            f"({g.memory_gb:.0f} GB, {g.peak_tflops:.0f} TFLOP/s bf16 each; MFU {a.mfu})",
            f"config: {p.config_source}",
            f"parameters: vision {pr['vision'] / 1e6:.1f}M, projector {pr['projector'] / 1e6:.1f}M, "
            f"LLM {pr['llm'] / 1e9:.3f}B, total {pr['total'] / 1e9:.3f}B (LoRA r{a.lora_rank}: "
            f"{pr['lora'] / 1e6:.1f}M)",
            f"tokens per training sample: {p.tokens.train} ({p.tokens.image} image; text "
            f"{p.tokens.text_counted_by})",
            f"FLOPs: train FT-Proj {f.train_per_sample['ft-proj'] / 1e12:.1f} T, FT-E2E "
            f"{f.train_per_sample['ft-e2e'] / 1e12:.1f} T per sample; eval {f.eval_per_sample / 1e12:.2f} T "
            f"per image; time for {a.task_size}", ""]


def _recommended(e: EngineRow) -> str:
    rec = e.recommended
    if rec is None:
        return "-"
    return (f"micro {rec.micro_batch} x accum {rec.accumulation_steps}"
            + (" + checkpointing" if rec.gradient_checkpointing else ""))


def _row(engine: str, e: EngineRow, *, regime: str, trained: int) -> list[str]:
    m = e.memory.to_gb()
    activations = (f"{m.get('activations_per_sample', 0):.1f} / "
                   f"{m.get('activations_per_sample_checkpointed', 0):.2f}")
    return [regime, engine, f"{trained / 1e6:,.1f}M", f"{m['weights']:.1f}", f"{m['gradients']:.1f}",
            f"{m['optimizer']:.1f}", activations, f"{m['kv_cache_scoring']:.1f}", f"{e.peak_gb:.1f}",
            "yes" if e.fits else "NO", _recommended(e) if e.fits else e.instead or "-",
            f"{e.hours:.2f}" if e.fits else "-"]


def render(p: Plan) -> str:
    from tabulate import tabulate

    rows = [_row(engine, e, regime=regime, trained=r.trainable_parameters)
            for regime, r in p.regimes.items() for engine, e in r.engines.items()]
    return "\n".join([*_header(p), tabulate(rows, headers=HEADERS, maxcolwidths=[None] * 10 + [64, None])])
