"""The baselines stage: a random classifier, CLIP zero-shot and a probe on CLIP embeddings (no MLLM loaded).

It is its own run folder (regime ``baselines``) with its own record, written by one process.
"""

from __future__ import annotations

import time

from .. import RESULT_SCHEMA_VERSION, __version__
from ..config import BASELINES
from ..schema import CONFIG, METRICS, BaselinesRecord, config_record, digest
from ..storage.integrity import seal
from ..storage.results import atomic_write_json, provenance
from .resolved import ResolvedRun


def baselines_stage(run: ResolvedRun) -> dict:
    """Run the baselines into ``run``'s folder and write its record; the record as written."""
    from ..baselines import BaselineJob, run_baselines

    cfg, data, clip, d = run.cfg, run.data, run.setting.clip, run.folder
    started = time.perf_counter()
    atomic_write_json(d / CONFIG, seal(config_record(run.identity, cfg)))
    run.log(f"[run] baselines seed {run.seed} -> {d}")
    job = BaselineJob(d, clip, tuple(cfg.clip_templates), run.seed, run.setting.cache, run.dist.device,
                      cfg.progress)
    res = run_baselines(job, data, cfg.probe, run.log)
    zs = res["clip_zero_shot"]
    record = BaselinesRecord(
        schema_version=RESULT_SCHEMA_VERSION,
        projbench_version=__version__,
        model=cfg.model,
        checkpoint=clip.label,
        projector_family=run.setting.adapter_spec.projector_family,
        task=cfg.task,
        task_version=data.spec.version,
        task_fingerprint=data.fingerprint,
        regime=BASELINES,
        lora=False,
        seed=run.seed,
        eval_mode="clip-similarity",
        limit=data.limit,
        config_hash=digest(run.identity),
        data={"classes": data.classes, "missing_classes": data.missing_classes,
              "source": data.source_description, "n_train": len(data.splits["train"]),
              "n_test": len(data.splits["test"])},
        clip={**clip.to_dict(), "templates": list(cfg.clip_templates), "identity": zs.get("clip_identity")},
        baselines=res,
        probe_config=cfg.probe.to_dict(),
        timing={"run_s": time.perf_counter() - started},
        provenance=provenance(),
    )
    metrics = record.to_json()
    atomic_write_json(d / METRICS, seal(metrics))
    run.log(f"[done] baselines seed {run.seed}: random macro-F1 {res['random']['macro_f1']:.4f}, CLIP zero-shot "
            f"{zs['macro_f1']:.4f} ({clip.label}), CLIP-embedding probe {res['clip_probe']['macro_f1']:.4f}")
    return metrics
