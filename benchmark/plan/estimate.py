"""The estimate: from a model, a task and GPUs to a :class:`Plan`, before any weight is downloaded."""

from __future__ import annotations

from ..schema import Regime
from .architecture import resolve_architecture
from .counting import LORA_RANK, TRAINED_REGIMES, MetaModel
from .hardware import USABLE, Gpus
from .memory import ADAM_BYTES, GRADIENT_BYTES, TRAINED_WEIGHT_BYTES, Activations, kv_cache_bytes
from .regimes import Workings, regime_table
from .result import Assumptions, Flops, Plan
from .timing import DEFAULT_MFU, SECONDS_PER_HOUR, Clock
from .tokens import TokenLengths, prompt_tokens
from .workload import Workload

DEFAULT_SCORE_ROWS = 32  # benchmark.evaluate.loglik.SCORE_ROWS: KV-cache rows of class scoring at once


def count_workings(meta: MetaModel, tokens: TokenLengths, *, dtype_bytes: int, score_rows: int,
                   micro_batch: int | None) -> tuple[Workings, Flops]:
    """Count the meta model at the task's token lengths: what the regime table is computed from."""
    shape = meta.shape
    # Evaluation: the prompt once (with the cached features), then every class continuation on its KV cache.
    eval_flops = meta.llm_flops(tokens.prompt) + meta.llm_flops(tokens.answers_total)
    train_flops = {r: meta.train_flops(r, tokens.train) for r in TRAINED_REGIMES}
    activations = {r: Activations.model(meta.activation_bytes(r, tokens.train), layers=shape.layers,
                                        hidden=shape.hidden, tokens=tokens.train, vocab=shape.vocab,
                                        dtype_bytes=dtype_bytes) for r in TRAINED_REGIMES}
    kv = kv_cache_bytes(score_rows=score_rows, layers=shape.layers, kv_heads=shape.kv_heads,
                        head_dim=shape.head_dim, dtype_bytes=dtype_bytes, tokens=tokens.train)
    workings = Workings(parameters=meta.parameters(), lora=meta.lora_parameters(), train_flops=train_flops,
                        eval_flops=eval_flops, activations=activations, kv_cache=kv, dtype_bytes=dtype_bytes,
                        micro_batch=micro_batch,
                        gathered={r: meta.gathered(r) for r in (*TRAINED_REGIMES, Regime.FT_E2E_LORA)})
    flops = Flops(vision_per_image=meta.vision_flops(), projector_per_image=meta.projector_flops(),
                  train_per_sample=train_flops, eval_per_sample=eval_flops)
    return workings, flops


def plan(model: str, task_name: str, *, gpus: str, model_path: str | None = None, micro_batch: int | None = None,
         mfu: float = DEFAULT_MFU, peak_tflops: float | None = None, n_train: int | None = None,
         n_test: int | None = None, dtype_bytes: int = 2, score_rows: int = DEFAULT_SCORE_ROWS,
         train_tokens: int | None = None, architecture=None, hardware: Gpus | None = None,
         tokenizer_source: str | None = None) -> Plan:
    """Plan ``model`` on ``task_name`` with ``gpus`` (``COUNTxNAME``); ``Plan.to_json()`` gives docs/plan.md's keys.

    ``train_tokens`` replaces the task's real prompt length (e.g. to compare with a published count);
    ``architecture``, ``hardware`` and ``tokenizer_source`` replace the spec's config, ``gpus`` and the tokenizer
    (``--measure`` plans exactly the model and device it measures)."""
    from ..registry import plugins

    reg = plugins()
    spec, task = reg.adapters.get(model), reg.tasks.get(task_name)
    hw = hardware or Gpus.parse(gpus, peak_tflops)
    clock = Clock(hw, mfu)
    arch = architecture or resolve_architecture(spec, model_path)
    meta = MetaModel(arch, dtype_bytes)
    tokens = prompt_tokens(spec, task, image_tokens=arch.image_tokens,
                           tokenizer_source=tokenizer_source or model_path)
    if train_tokens is not None:
        tokens = tokens.with_train_tokens(train_tokens)
    workings, flops = count_workings(meta, tokens, dtype_bytes=dtype_bytes, score_rows=score_rows,
                                     micro_batch=micro_batch)
    work = Workload.of(task.name, n_train=n_train, n_test=n_test)
    assumptions = Assumptions(mfu=mfu, dtype_bytes=dtype_bytes, usable_memory_fraction=USABLE,
                              trained_weight_bytes=TRAINED_WEIGHT_BYTES, gradient_bytes=GRADIENT_BYTES,
                              adam_bytes=ADAM_BYTES, lora_rank=LORA_RANK, score_rows=score_rows,
                              task_size=work.source, n_train=work.n_train, n_test=work.n_test)
    feature_seconds = clock.seconds((work.n_train + work.n_test) * (flops.vision_per_image or 0))
    return Plan(model=spec.name, task=task.name, config_source=arch.source, gpus=hw, assumptions=assumptions,
                parameters={**workings.parameters, "lora": workings.lora}, tokens=tokens, flops=flops,
                hours_feature_extraction=feature_seconds / SECONDS_PER_HOUR,
                regimes=regime_table(workings, hw=hw, clock=clock, work=work))
