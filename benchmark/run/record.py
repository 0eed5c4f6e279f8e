"""The record of a run folder: its files written through the schema's names, and ``metrics.json`` written last.

Only rank 0 calls these. ``metrics.json`` carries the SHA-256 of every file beside it, checked before the run
counts as finished, so it is the last thing written.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace

import torch

from .. import RESULT_SCHEMA_VERSION, __version__
from ..evaluate.generation import GENERATE_METRICS
from ..schema import (
    CHECKPOINT,
    METRICS,
    PREDICTIONS,
    PROBE_PREDICTIONS,
    PROJECTOR,
    Regime,
    RunRecord,
    as_stored,
    digest,
)
from ..storage.integrity import seal, sha256_file
from ..storage.results import atomic_save_tensors, atomic_write_json, atomic_write_text, provenance
from ..train.loop import projector_state
from .evaluate import paired_stage
from .resolved import ResolvedRun

# Trained FT-E2E states up to this size (tiny twins, LoRA) are kept after a run for `analyze`.
KEEP_FOR_ANALYSES_MAX_PARAMS = 200_000_000

TASK_METRICS = ("macro_f1", "accuracy", "n", "ci95", "interval", "per_class", "confusion_matrix", "score_norm",
                "length_bias", *GENERATE_METRICS)


def execution(run: ResolvedRun, adapter) -> dict:
    """What the run resolved at run time; dtype and global batch are part of the replicate identity."""
    return {
        "dtype": str(adapter.dtype).removeprefix("torch."),
        "device_type": torch.device(run.dist.device).type,
        "num_processes": run.dist.world_size,
        "global_batch": layout.global_batch if (layout := run.setting.plan.training.get(run.regime)) else None,
        "template": adapter.template_name,
    }


def write_run(run: ResolvedRun, adapter, *, ev: dict, probes: dict, probe_preds: dict, training, started: float):
    """Write the run's predictions, projector and ``metrics.json``; drop a checkpoint not kept. The record."""
    d, regime = run.folder, run.regime
    atomic_write_json(d / PROBE_PREDICTIONS, probe_preds)
    paired = None if regime == Regime.ZERO_SHOT else paired_stage(run, ev["pred_indices"],
                                                                  probe_preds["post_projection"])
    artifacts = {PROBE_PREDICTIONS: sha256_file(d / PROBE_PREDICTIONS)}
    if regime != Regime.ZERO_SHOT:
        atomic_save_tensors(d / PROJECTOR, projector_state(adapter))
        artifacts[PROJECTOR] = sha256_file(d / PROJECTOR)
    atomic_write_text(d / PREDICTIONS, "".join(json.dumps(p) + "\n" for p in ev["predictions"]))
    artifacts[PREDICTIONS] = sha256_file(d / PREDICTIONS)
    record = run_record(run, adapter, ev=ev, probes=probes, paired=paired, training=training,
                        run_s=time.perf_counter() - started)
    # SHA-256 of the files beside it, checked before the run counts as finished
    metrics = replace(record, artifacts=artifacts).to_json()
    atomic_write_json(d / METRICS, seal(metrics))
    # FT-E2E keeps its trained state for `analyze` (FT-E2E model state) when it is small; a large one only
    # with --keep-checkpoints (it is the size of the LLM).
    small = (training or {}).get("trainable_parameters", float("inf")) <= KEEP_FOR_ANALYSES_MAX_PARAMS
    keep = run.cfg.keep_checkpoints or (regime == Regime.FT_E2E and small)
    if not keep and (d / CHECKPOINT).exists():
        (d / CHECKPOINT).unlink()
    return metrics


def run_record(run: ResolvedRun, adapter, *, ev: dict, probes: dict, paired, training, run_s: float) -> RunRecord:
    cfg, data, regime, spec = run.cfg, run.data, run.regime, run.setting.adapter_spec
    exe = execution(run, adapter)
    replicate = cfg.replicate_identity(regime, exe)
    return RunRecord(
        schema_version=RESULT_SCHEMA_VERSION, projbench_version=__version__,
        model=cfg.model, checkpoint=str(adapter.checkpoint),
        # The loaded model's own family where it has one (a composed model's depends on its spec).
        projector_family=getattr(adapter, "projector_family", "") or spec.projector_family,
        projector_modules=spec.projector_modules,
        task=cfg.task, task_version=data.spec.version, task_fingerprint=data.fingerprint, domain=data.spec.domain,
        regime=regime, lora=bool(cfg.lora and regime == Regime.FT_E2E), seed=run.seed, eval_mode=cfg.eval_mode,
        limit=data.limit,
        config_hash=digest(run.identity),
        # Runs with equal replicate hashes differ only by seed: the leaderboard averages only those.
        replicate_hash=digest(replicate),
        setup_hash=digest(cfg.setup_identity(replicate)),
        replicate_identity=as_stored(replicate),
        execution=exe, revision=run.setting.revision, template=adapter.template_name, score_norm=cfg.score_norm,
        data=data_part(data),
        metrics={k: ev["metrics"][k] for k in TASK_METRICS if k in ev["metrics"]},
        probe=probes, paired=paired, probe_config=cfg.probe.to_dict(), training=training,
        processes=run.dist.world_size, distributed_backend=run.dist.backend,
        timing={**run.setting.timing, "evaluation_s": ev["metrics"]["seconds"], "run_s": run_s},
        provenance=provenance(),
        artifacts={},
    )


def data_part(data) -> dict:
    """The record's ``data`` part: the label space and what was left out of the task's images, and why."""
    return {
        "classes": data.classes, "missing_classes": data.missing_classes, "source": data.source_description,
        "n_train": len(data.splits["train"]), "n_test": len(data.splits["test"]),
        "skipped_unreadable": {k: len(v) for k, v in data.skipped.items()},
        "skipped_uids": data.skipped,
        "excluded": data.excluded,
        "duplicates": [list(p) for p in data.duplicates],
        "dropped_duplicates": data.dropped_duplicates,
    }
