"""`plan`: will a run fit these GPUs, and how long will it take? Answered before any weight is downloaded.

The real architecture is built on the meta device from the config its adapter ships (``AdapterSpec.architecture``,
reached through the registry) or from ``--model-path``. Parameters are counted per part; FLOPs are counted with
``torch.utils.flop_counter.FlopCounterMode`` per part (the vision encoder, the projector and the LLM run separately:
the full forward of some models calls ``.item()``, which meta tensors cannot answer) at the task's real prompt
length; activation memory is measured as the bytes autograd saves for backward during a meta forward.

Memory model per GPU (bytes per parameter, matching how ``benchmark.training`` trains):
frozen weights in the run's dtype (bf16: 2); trained weights kept as fp32 master copies (4), their fp32 gradients
(4) and AdamW's two fp32 moments (8). DDP replicates all of it; FSDP full-shard and DeepSpeed ZeRO-3 (two rows,
``fsdp`` and ``zero3``, with the same memory model: both partition parameters, gradients and optimizer state
over all GPUs) divide weights, gradients and optimizer state by the number of GPUs. Activations are per GPU at its
micro-batch.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import torch

from .config import PAPER_GLOBAL_BATCH
from .errors import BenchmarkError

# Dense bf16 tensor-core peak (TFLOP/s) and memory (GB) of common GPUs, from the vendors' datasheets.
GPUS = {
    "A100-40GB": (312.0, 40), "A100-80GB": (312.0, 80), "H100-80GB": (989.0, 80), "H200-141GB": (989.0, 141),
    "L40S-48GB": (362.0, 48), "L4-24GB": (121.0, 24), "A10-24GB": (125.0, 24), "A6000-48GB": (155.0, 48),
}
USABLE = 0.9            # of a GPU's memory: the rest goes to the CUDA context, allocator fragmentation, buffers
DEFAULT_MFU = 0.35      # model FLOP utilisation assumed for time estimates (stated in every answer)
DEFAULT_SCORE_ROWS = 32  # benchmark.evaluation.SCORE_ROWS: KV-cache rows of class scoring at once
LORA_RANK, LORA_TARGETS = 128, ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Split sizes (train, test) of the images a task's source holds, for time estimates; others are planned per 1000
# images or with --n-train/--n-test. Only exact published counts, each from the task's definition:
TASK_SIZES = {
    "derm": (15297, 3937),     # tasks/paper.py: the hub copies of DermNet's Kaggle train / test folders it loads
    "textures": (1880, 1880),  # tasks/paper.py: DTD split 1, train1 / test1 (40 images per class of 47 each)
    "eurosat": (16200, 5400),  # tasks/paper.py: EuroSAT RGB, train / test of Neumann et al.'s split (timm copy)
}
# One row per way of holding the trained state: a single GPU, DDP (every GPU holds everything), FSDP full-shard
# and DeepSpeed ZeRO-3 (same partitioning of parameters, gradients and optimizer state over all GPUs).
ENGINES = ("single", "ddp", "fsdp", "zero3")
SHARDED = ("fsdp", "zero3")
GB = 1e9


@dataclass(frozen=True)
class Gpus:
    count: int
    name: str
    memory_gb: float
    peak_tflops: float

    @classmethod
    def parse(cls, text: str, peak_tflops: float | None = None) -> Gpus:
        m = re.fullmatch(r"(?:(\d+)x)?(.+)", text.strip())
        count, name = int(m.group(1) or 1), m.group(2)
        known = {k.lower(): k for k in GPUS}
        if name.lower() in known:
            peak, mem = GPUS[known[name.lower()]]
            return cls(count, known[name.lower()], mem, peak_tflops or peak)
        mm = re.fullmatch(r".*?(\d+)GB", name, re.I)
        if mm and peak_tflops:
            return cls(count, name, float(mm.group(1)), peak_tflops)
        raise BenchmarkError(f"--gpus {text!r}: unknown GPU. Use COUNTxNAME with NAME one of {', '.join(GPUS)}, "
                             "or e.g. 2xMYGPU-80GB together with --peak-tflops.")


def _architecture(spec, model_path: str | None):
    if model_path is None:
        if spec.architecture is None:
            raise BenchmarkError(f"no configuration ships for model {spec.name!r}: pass --model-path DIR (a folder "
                                 "holding its config.json) to plan it.")
        return spec.architecture()
    from pathlib import Path

    from transformers import AutoConfig, AutoModelForImageTextToText

    cfg_file = Path(model_path) / "config.json"
    if not cfg_file.exists():
        raise BenchmarkError(f"--model-path {model_path!r} has no config.json to build the model from.")
    if spec.architecture is None:
        raise BenchmarkError(f"{spec.name!r} has no architecture description (parts, image tokens) for plan.")
    config = AutoConfig.from_pretrained(model_path)
    base = spec.architecture()
    return replace(base, build=lambda: AutoModelForImageTextToText.from_config(config),
                   llm_config=getattr(config, "text_config", base.llm_config), source=str(cfg_file))


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _lora_params(llm) -> int:
    n = 0
    for name, mod in llm.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in LORA_TARGETS:
            n += LORA_RANK * (mod.in_features + mod.out_features)
    return n


def _flops(fn) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _saved_bytes(fn) -> int:
    """Bytes autograd keeps for backward while ``fn`` runs (meta tensors know their sizes)."""
    total, seen = 0, set()

    def pack(t):
        nonlocal total
        key = (t.data_ptr() if t.device.type != "meta" else id(t), t.shape, t.dtype)
        if key not in seen:
            seen.add(key)
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def prompt_tokens(spec, task, image_tokens: int, tokenizer_source: str | None) -> dict:
    """Tokens of the task's real training prompt: image tokens + question/template text + the longest answer."""
    from .prompt import build_question

    question = build_question(task.domain, list(task.classes), 0, "plan")
    longest = max(task.classes, key=len) if task.classes else "label"
    text = f"USER: \n{question} ASSISTANT: {longest}"
    tok = None
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer_source or spec.checkpoint, local_files_only=True)
    except Exception:  # noqa: BLE001 - no local tokenizer: estimate below, and say so
        tok = None
    if tok is not None:
        n_text, how = len(tok(text)["input_ids"]) + 1, "tokenizer"
        n_answer = len(tok(" " + longest, add_special_tokens=False)["input_ids"]) + 1
        n_classes = [len(tok(" " + c, add_special_tokens=False)["input_ids"]) + 1 for c in task.classes]
    else:  # ~3.6 characters per token for Llama/Gemma-style tokenisers on English with quotes and capitals
        n_text, how = math.ceil(len(text) / 3.6) + 2, "estimate: 3.6 characters per token (no local tokenizer)"
        n_answer = math.ceil(len(longest) / 3.6) + 1
        n_classes = [math.ceil(len(c) / 3.6) + 1 for c in task.classes]
    return {"train": image_tokens + n_text, "prompt": image_tokens + n_text - n_answer, "image": image_tokens,
            "longest_answer": n_answer, "answers_total": sum(n_classes), "text_counted_by": how}


def plan(model: str, task_name: str, gpus: str, model_path: str | None = None, micro_batch: int | None = None,
         mfu: float = DEFAULT_MFU, peak_tflops: float | None = None, n_train: int | None = None,
         n_test: int | None = None, dtype_bytes: int = 2, score_rows: int = DEFAULT_SCORE_ROWS,
         train_tokens: int | None = None) -> dict:
    """The plan as a JSON-ready dict (keys documented in docs/plan.md)."""
    from .registry import plugins

    reg = plugins()
    spec = reg.adapters.get(model)
    task = reg.tasks.get(task_name)
    hw = Gpus.parse(gpus, peak_tflops)
    if not 0 < mfu <= 1:
        raise BenchmarkError(f"--mfu must be in (0, 1], got {mfu}.")
    arch = _architecture(spec, model_path)
    with torch.device("meta"):
        prev = torch.get_default_dtype()
        torch.set_default_dtype(torch.bfloat16 if dtype_bytes == 2 else torch.float32)
        try:
            net = arch.build()
        finally:
            torch.set_default_dtype(prev)
    parts = arch.parts(net)
    params = {k: _count(v) for k, v in parts.items()}
    params["total"] = _count(net)
    lora = _lora_params(parts["llm"])
    tokens = prompt_tokens(spec, task, arch.image_tokens, model_path)
    if train_tokens is not None:  # e.g. to compare with a published count at a known length
        if train_tokens <= arch.image_tokens + tokens["longest_answer"]:
            raise BenchmarkError(f"--tokens {train_tokens} leaves no room for the {arch.image_tokens} image tokens "
                                 "and the answer.")
        tokens.update(train=train_tokens, prompt=train_tokens - tokens["longest_answer"], text_counted_by="--tokens")
    text = arch.llm_config
    hidden, layers = text.hidden_size, text.num_hidden_layers
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or hidden // heads
    vocab = text.vocab_size
    dev = torch.device("meta")
    dt = torch.bfloat16 if dtype_bytes == 2 else torch.float32

    def llm(embeds):
        return arch.llm(net, embeds) if arch.llm else _llm_forward(parts, embeds)

    def project(feats):
        return arch.project(net, feats) if arch.project else parts["projector"](feats)

    feats1 = torch.empty((1, *arch.feature_shape), device=dev, dtype=dt)
    px = torch.empty((1, arch.pixel_channels, arch.image_size, arch.image_size), device=dev, dtype=dt)
    net.requires_grad_(False)
    vision_flops = _flops(lambda: arch.vision(net, px)) if arch.vision else None
    proj_flops = _flops(lambda: project(feats1))

    def train_step(regime: str, batch: int = 1, measure=_flops):
        net.requires_grad_(False)
        parts["projector"].requires_grad_(True)
        if regime == "ft-e2e":
            parts["llm"].requires_grad_(True)
        f = torch.empty((batch, *arch.feature_shape), device=dev, dtype=dt)

        def run():
            emb = project(f)
            seq = torch.empty((batch, tokens["train"] - emb.shape[1], hidden), device=dev, dtype=emb.dtype)
            out = llm(torch.cat([emb, seq], dim=1))
            if measure is _flops:
                out.float().sum().backward()
            return out

        try:
            return measure(run)
        finally:
            net.requires_grad_(False)

    train_flops = {r: train_step(r) for r in ("ft-proj", "ft-e2e")}
    # Evaluation: the prompt once (with the cached features), then every class continuation on its KV cache.
    prompt_flops = _flops(lambda: llm(torch.empty((1, tokens["prompt"], hidden), device=dev, dtype=dt)))
    answers_flops = _flops(lambda: llm(torch.empty((1, tokens["answers_total"], hidden), device=dev, dtype=dt)))
    eval_flops = prompt_flops + answers_flops
    act_per_sample = {r: train_step(r, 1, _saved_bytes) for r in ("ft-proj", "ft-e2e")}
    logits_per_sample = tokens["train"] * vocab * 4  # the loss upcasts the logits to fp32
    kv_per_row = 2 * layers * kv_heads * head_dim * dtype_bytes * tokens["train"]

    sizes = TASK_SIZES.get(task.name)
    n_tr = n_train or (sizes[0] if sizes else 1000)
    n_te = n_test or (sizes[1] if sizes else 1000)
    size_source = ("--n-train/--n-test" if n_train or n_test else
                   f"published split sizes of {task.name}" if sizes else "per 1000 train and 1000 test images")
    throughput = hw.peak_tflops * 1e12 * mfu

    total_params = params["total"]
    regimes = {}
    for regime in ("zero-shot", "ft-proj", "ft-e2e", "ft-e2e-lora"):
        trained = {"zero-shot": 0, "ft-proj": params["projector"], "ft-e2e": params["projector"] + params["llm"],
                   "ft-e2e-lora": params["projector"] + lora}[regime]
        base = "ft-e2e" if regime.startswith("ft-e2e") else regime
        engines = {}
        for engine in ENGINES:
            n = 1 if engine == "single" else hw.count
            if engine != "single" and hw.count == 1:
                continue
            shard = n if engine in SHARDED else 1
            weights = ((total_params - trained) * dtype_bytes + trained * 4) / shard
            grads, optim = trained * 4 / shard, trained * 8 / shard
            kv = min(score_rows, 32) * kv_per_row
            if regime == "zero-shot":
                mem = {"weights": weights, "gradients": 0.0, "optimizer": 0.0, "kv_cache_scoring": kv}
                fits = sum(mem.values()) <= hw.memory_gb * GB * USABLE
                engines[engine] = _engine_entry(mem, fits, hw, None)
                continue
            act_full = act_per_sample[base] + logits_per_sample
            per_layer = act_per_sample[base] / max(1, layers)
            act_ckpt = layers * tokens["train"] * hidden * dtype_bytes + per_layer + logits_per_sample
            free = hw.memory_gb * GB * USABLE - (weights + grads + optim)
            choice = _choose_micro(free, act_full, act_ckpt, micro_batch)
            mem = {"weights": weights, "gradients": grads, "optimizer": optim,
                   "activations_per_sample": act_full, "activations_per_sample_checkpointed": act_ckpt,
                   "kv_cache_scoring": kv}
            glob = PAPER_GLOBAL_BATCH[base]
            if choice:
                mb, ckpt = choice
                mb = min(mb, max(1, glob // n))
                while (glob // n) % mb:
                    mb -= 1
                choice = {"micro_batch": mb, "gradient_checkpointing": ckpt,
                          "accumulation_steps": max(1, glob // (n * mb)), "global_batch": glob,
                          "activations_at_micro_batch": mb * (act_ckpt if ckpt else act_full)}
            engines[engine] = _engine_entry(mem, choice is not None, hw, choice)
        train_f = 0 if regime == "zero-shot" else train_flops[base]
        seconds_train = n_tr * train_f / (hw.count * throughput)
        seconds_eval = n_te * eval_flops / (hw.count * throughput)
        regimes[regime] = {
            "trainable_parameters": trained,
            "flops_per_train_sample": train_f or None,
            "flops_per_eval_sample": eval_flops,
            "hours_train": seconds_train / 3600 if train_f else None,
            "hours_eval": seconds_eval / 3600,
            "engines": engines,
        }
        for engine, entry in engines.items():  # wall time on the engine's own GPUs (one for "single")
            n = 1 if engine == "single" else hw.count
            entry["hours"] = (seconds_train + seconds_eval) * hw.count / n / 3600
    feature_hours = (n_tr + n_te) * (vision_flops or 0) / (hw.count * throughput) / 3600
    return {
        "model": spec.name, "task": task.name, "config_source": arch.source,
        "gpus": {"count": hw.count, "name": hw.name, "memory_gb": hw.memory_gb, "peak_tflops_bf16": hw.peak_tflops},
        "assumptions": {"mfu": mfu, "dtype_bytes": dtype_bytes, "usable_memory_fraction": USABLE,
                        "trained_weight_bytes": 4, "gradient_bytes": 4, "adam_bytes": 8,
                        "lora_rank": LORA_RANK, "score_rows": score_rows, "task_size": size_source,
                        "n_train": n_tr, "n_test": n_te},
        "parameters": {**params, "lora": lora},
        "tokens": tokens,
        "flops": {"vision_per_image": vision_flops, "projector_per_image": proj_flops,
                  "train_per_sample": train_flops, "eval_per_sample": eval_flops},
        "hours_feature_extraction": feature_hours,
        "regimes": regimes,
    }


def _llm_forward(parts, embeds):
    from .adapters.configs import llm_forward

    return llm_forward(parts, embeds)


def _choose_micro(free: float, act_full: float, act_ckpt: float, wanted: int | None):
    """(micro-batch, checkpointing) that fits ``free`` bytes: the largest power of two up to 16 without
    checkpointing, else with it; ``wanted`` forces the micro-batch. None if not even one sample fits."""
    if free <= 0:
        return None
    options = [wanted] if wanted else [16, 8, 4, 2, 1]
    for ckpt, per in ((False, act_full), (True, act_ckpt)):
        for mb in options:
            if mb * per <= free:
                return mb, ckpt
    return None


def _engine_entry(mem: dict, fits: bool, hw: Gpus, choice) -> dict:
    need = mem["weights"] + mem["gradients"] + mem["optimizer"]
    if choice:
        need += choice["activations_at_micro_batch"]
    elif "activations_per_sample_checkpointed" in mem:
        need += mem["activations_per_sample_checkpointed"]
    else:
        need += mem.get("kv_cache_scoring", 0)
    return {"memory_gb": {k: v / GB for k, v in mem.items()}, "peak_gb": need / GB, "fits": fits,
            "gpu_gb": hw.memory_gb, "recommended": choice}


def render(p: dict) -> str:
    from tabulate import tabulate

    g, pr, f = p["gpus"], p["parameters"], p["flops"]
    lines = [f"plan: {p['model']} on {p['task']} with {g['count']}x{g['name']} "
             f"({g['memory_gb']:.0f} GB, {g['peak_tflops_bf16']:.0f} TFLOP/s bf16 each; MFU {p['assumptions']['mfu']})",
             f"config: {p['config_source']}",
             f"parameters: vision {pr['vision'] / 1e6:.1f}M, projector {pr['projector'] / 1e6:.1f}M, "
             f"LLM {pr['llm'] / 1e9:.3f}B, total {pr['total'] / 1e9:.3f}B (LoRA r{p['assumptions']['lora_rank']}: "
             f"{pr['lora'] / 1e6:.1f}M)",
             f"tokens per training sample: {p['tokens']['train']} ({p['tokens']['image']} image; text "
             f"{p['tokens']['text_counted_by']})",
             f"FLOPs: train FT-Proj {f['train_per_sample']['ft-proj'] / 1e12:.1f} T, FT-E2E "
             f"{f['train_per_sample']['ft-e2e'] / 1e12:.1f} T per sample; eval {f['eval_per_sample'] / 1e12:.2f} T "
             f"per image; time for {p['assumptions']['task_size']}", ""]
    rows = []
    for regime, r in p["regimes"].items():
        for engine, e in r["engines"].items():
            m, rec = e["memory_gb"], e["recommended"]
            rows.append([regime, engine, f"{r['trainable_parameters'] / 1e6:,.1f}M", f"{m['weights']:.1f}",
                         f"{m['gradients']:.1f}", f"{m['optimizer']:.1f}",
                         f"{m.get('activations_per_sample', 0):.1f} / {m.get('activations_per_sample_checkpointed', 0):.2f}",
                         f"{m['kv_cache_scoring']:.1f}", f"{e['peak_gb']:.1f}", "yes" if e["fits"] else "NO",
                         (f"micro {rec['micro_batch']} x accum {rec['accumulation_steps']}"
                          + (" + checkpointing" if rec["gradient_checkpointing"] else "")) if rec else "-",
                         f"{e['hours']:.2f}"])
    lines.append(tabulate(rows, headers=["regime", "engine", "trained", "weights GB", "grads GB", "optim GB",
                                         "act/sample GB (ckpt)", "KV GB", "peak GB", "fits", "recommended", "hours"]))
    return "\n".join(lines)
