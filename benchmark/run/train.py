"""The training stage of a fine-tuned regime, resumable.

Its resume markers, in the run folder: ``training.json`` beside the trained weights (``checkpoint.safetensors``)
once training has finished (a rerun reuses them), and ``train_state`` while it runs (a rerun continues from the
last saved step). Only rank 0 writes; every rank trains its share.
"""

from __future__ import annotations

import math

from ..config import PAPER_GLOBAL_BATCH, TrainConfig
from ..distributed import engine_notes
from ..errors import BenchmarkError
from ..schema import CHECKPOINT, LEGACY_TRAIN_PROGRESS, TRAIN_PROGRESS, TRAINING
from ..storage.integrity import CorruptFileError, load_safetensors, read_sealed_json, seal, sha256_file
from ..storage.results import atomic_save_tensors, atomic_write_json
from ..train import state as train_state
from ..train.loop import NonFiniteLossError, finetune, set_trainable, trainable_state
from .resolved import ModelState, ResolvedRun


def training_stage(run: ResolvedRun, state: ModelState) -> dict:
    """Train ``state``'s model for ``run`` (or reuse the training saved before an interruption).

    Returns the record's ``training`` part; ``state`` then holds the trained model, with whole weights.
    """
    tcfg = run.setting.plan.train_config(run.regime)  # with the global batch resolved once
    ckpt = run.folder / CHECKPOINT
    state.mark_trained(ckpt)  # from here on its weights are not the checkpoint's
    saved = run.dist.rank0_first(lambda: saved_training(run))
    if saved is not None:  # trained before an interruption
        training, weights = saved
        _put_weights(state.adapter, run.regime, tcfg, weights, strict_about=ckpt)
        run.log(f"[resume] {run.regime} seed {run.seed}: training finished earlier, reusing {ckpt.name}")
        return training
    training = _train(run, state.adapter, tcfg)
    weights = trainable_state(state.adapter, run.regime)  # every rank: sharded weights are gathered
    if run.dist.trained_weights_sharded(run.cfg.engine):
        # Evaluate and probe with whole weights: a fresh copy of the model with the trained ones.
        run.dist.release()  # the engine's partitions and optimizer state go before the new copy
        state.adapter = state.load()
        _put_weights(state.adapter, run.regime, tcfg, weights)

    def write():
        atomic_save_tensors(ckpt, weights)
        atomic_write_json(run.folder / TRAINING, seal({**training, "checkpoint_sha256": sha256_file(ckpt)}))
        train_state.remove(run.folder / TRAIN_PROGRESS)

    run.dist.on_main(write)
    return training


def _put_weights(adapter, regime: str, tcfg: TrainConfig, weights: dict, *, strict_about=None) -> None:
    """Load trained ``weights`` into ``adapter`` (made trainable as training made it), ready to evaluate."""
    set_trainable(adapter, regime, tcfg)
    missing = adapter.model.load_state_dict(weights, strict=False)
    if strict_about is not None and missing.unexpected_keys:
        raise BenchmarkError(f"{strict_about} does not match the model; delete {strict_about.parent} and rerun.")
    adapter.model.eval()


def _train(run: ResolvedRun, adapter, tcfg: TrainConfig) -> dict:
    """Fine-tune from the cached features, continuing a saved training state if an intact one is there."""
    cfg, progress_file = run.cfg, run.folder / TRAIN_PROGRESS
    _check_resume_marker(run)
    try:
        training = finetune(adapter, run.regime, store=run.stores["train"], samples=run.data.splits["train"],
                            classes=run.data.classes, domain=run.data.spec.domain, seed=run.seed, cfg=tcfg,
                            progress=cfg.progress, resume_file=progress_file)
    except NonFiniteLossError:
        # diverged: nothing to resume, nothing to block a rerun
        run.dist.on_main(lambda: train_state.remove(progress_file))
        raise
    for note in engine_notes(training):
        run.log(note)
    steps = training["optimizer_steps"]
    if steps and math.ceil(steps * tcfg.warmup_ratio) >= steps:  # the warm-up starts at lr 0 (LLaVA-1.5's schedule)
        run.log(f"[warning] {run.regime}: all {steps} optimizer step(s) were warm-up, the first at lr 0, so the weights "
                "moved little or not at all; give more steps (a smaller --global-batch, more --epochs or more data).")
    training["global_batch_source"] = ("--global-batch" if cfg.global_batch else
                                       f"paper default for {run.regime} ({PAPER_GLOBAL_BATCH[run.regime]})")
    return training


def _check_resume_marker(run: ResolvedRun) -> None:
    """Discard a mid-training state that cannot be continued (an old pickle, or one failing its checks)."""
    d, where = run.folder, f"{run.regime} seed {run.seed}"
    progress_file = d / TRAIN_PROGRESS
    # Rank 0 looks (reading a sharded run's whole state once, not once per rank); every rank follows its answer.
    legacy = run.dist.from_rank0(lambda: (d / LEGACY_TRAIN_PROGRESS).exists())
    if legacy:  # a pickle: never loaded, whoever wrote it
        run.log(f"[resume] {where}: ignoring {LEGACY_TRAIN_PROGRESS} (old pickle format, not loaded for safety); "
                "training from the start")
        run.dist.on_main(lambda: (d / LEGACY_TRAIN_PROGRESS).unlink())
    found = run.dist.from_rank0(lambda: (progress_file.exists(), progress_file.exists()
                                         and train_state.check(progress_file)))
    exists, problem = found
    if not exists:
        return
    if problem:
        run.log(f"[discard] {problem} Training {where} from the start.")
        run.dist.on_main(lambda: train_state.remove(progress_file))
    else:
        run.log(f"[resume] {where}: continuing training from {progress_file.name}")


def saved_training(run: ResolvedRun):
    """(training stats, trained weights) saved after training, if intact; else None (damaged: discarded)."""
    d = run.folder
    ckpt = d / CHECKPOINT
    if not (ckpt.exists() and (d / TRAINING).exists()):
        return None
    try:
        training = read_sealed_json(d / TRAINING)
        sha = training.pop("checkpoint_sha256", None)
        if sha is None:
            raise CorruptFileError(d / TRAINING, "written without the checkpoint's checksum")
        return training, load_safetensors(ckpt, sha)
    except CorruptFileError as exc:
        run.log(f"[discard] {exc} Training {run.regime} seed {run.seed} again.")
        ckpt.unlink(missing_ok=True)
        (d / TRAINING).unlink(missing_ok=True)
        return None
