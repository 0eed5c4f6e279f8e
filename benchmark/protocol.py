"""One `run`: the paper's protocol for one model and one task, over seeds, resumable.

For each seed: zero-shot evaluation (+ probes of the pre-projection features and of the original projector),
FT-Proj and FT-E2E (train from cached features, evaluate, probe the fine-tuned projector). Every (regime, seed)
is a run directory whose ``metrics.json`` is written last; a finished one is skipped, an interrupted one
resumes from its last saved stage.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from safetensors.torch import save_file

from benchmark import RESULT_SCHEMA_VERSION, __version__, distributed
from benchmark.evaluate.generation import GENERATE_METRICS, evaluate_generate
from benchmark.evaluate.loglik import EvalSet, evaluate_loglik
from benchmark.evaluate.metrics import paired_bootstrap
from benchmark.evaluate.probe import probe_with_control, validation_split
from benchmark.storage.features import extract, model_revision, pooled
from benchmark.storage.integrity import (
    CorruptFileError,
    load_safetensors,
    read_finished,
    read_sealed_json,
    seal,
    sha256_file,
)
from benchmark.storage.paths import cache_root, results_root
from benchmark.storage.results import (
    atomic_write_json,
    atomic_write_text,
    atomic_write_with,
    clear_run_dir,
    has_saved_work,
    provenance,
    remove_stale_temps,
)
from benchmark.train import state as train_state
from benchmark.train.loop import NonFiniteLossError, finetune, projector_state, trainable_state
from benchmark.validation import batch_layout

from .config import (  # noqa: F401  (re-exported)
    BASELINES,
    EARLY_STOPPING,
    EVAL_MODES,
    PAPER_GLOBAL_BATCH,
    REGIMES,
    SCORE_NORMS,
    STAGES,
    ProbeConfig,
    RunConfig,
    TrainConfig,
)
from .errors import BenchmarkError, DataError
from .registry import plugins
from .schema import (
    CHECKPOINT,
    CONFIG,
    LEGACY_TRAIN_PROGRESS,
    LOCK,
    METRICS,
    PREDICTIONS,
    PROBE_PREDICTIONS,
    PROJECTOR,
    TRAIN_PROGRESS,
    TRAINING,
    BaselinesRecord,
    Regime,
    RunKey,
    RunRecord,
    as_stored,
    config_record,
    digest,
    digest_text,
)
from .tasks.base import TaskData, load_task

# Trained FT-E2E states up to this size (tiny twins, LoRA) are kept after a run for `analyze`.
KEEP_FOR_ANALYSES_MAX_PARAMS = 200_000_000


config_hash = digest  # the digest of a run's identity (kept under this name for callers)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Runner:
    def __init__(self, cfg: RunConfig, log=print):
        from .validation import validate_run

        # Before anything is loaded or written: a bad setting costs one line, not a crash after feature extraction.
        validate_run(cfg, Path(cfg.results_dir) if cfg.results_dir else results_root(),
                     Path(cfg.cache_dir) if cfg.cache_dir else cache_root())
        self.cfg, self.log = cfg, log
        reg = plugins()
        self.adapter_spec = reg.adapters.get(cfg.model)
        self.task_spec = reg.tasks.get(cfg.task)
        if cfg.domain:
            self.task_spec = replace(self.task_spec, domain=cfg.domain)
        from .baselines import choose_clip

        # Resolved once, so that the run identity names the CLIP actually used, not "the adapter's default".
        declared = self.adapter_spec.clip
        if callable(declared):  # the encoder depends on the checkpoint (e.g. a composed model's spec)
            declared = declared(cfg.model_path)
        self.clip = choose_clip(cfg.model, declared, cfg.clip_model, cfg.clip_pretrained)
        self.cfg = cfg = replace(cfg, clip_model=self.clip.model, clip_pretrained=self.clip.pretrained)
        self.results = Path(cfg.results_dir) if cfg.results_dir else results_root()
        self.cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_root()
        if cfg.engine not in distributed.ENGINES:
            raise BenchmarkError(f"--engine {cfg.engine!r}: choose one of {', '.join(distributed.ENGINES)}.")
        self.dist = distributed.setup(cfg.device, cfg.engine)
        if self.dist.deepspeed and cfg.dtype == "float16":
            raise BenchmarkError("--dtype float16 with DeepSpeed: projbench trains it in bf16 or fp32 (fp16 would need "
                                 "loss scaling, which skips steps); use --dtype bfloat16 or float32.")
        self.device = self.dist.device
        if not self.dist.is_main:  # one log for the whole run
            self.log = lambda *a, **k: None
        for r in cfg.regimes:  # a global batch that cannot be split fails here, before any work
            if r in PAPER_GLOBAL_BATCH:  # the fine-tuned regimes
                batch_layout(cfg.global_batch_for(r), cfg.micro_batch, self.dist.world_size)
        self.timing: dict[str, float] = {}
        self.num_processes = self.dist.world_size  # recorded; results do not depend on it
        self.revision: dict | None = None

    def execution(self, adapter, regime: str) -> dict:
        """What the run resolved at run time; dtype and global batch are part of the replicate identity."""
        cfg = self.cfg
        return {
            "dtype": str(adapter.dtype).removeprefix("torch."),
            "device_type": torch.device(self.device).type,
            "num_processes": self.num_processes,
            "global_batch": cfg.global_batch_for(regime) if regime in PAPER_GLOBAL_BATCH else None,
            "template": adapter.template_name,
        }

    # -- helpers -------------------------------------------------------------------------------------------
    def load_adapter(self):
        t = time.perf_counter()
        # Rank 0 loads first: a tiny twin is built into the shared cache once, not by every process at once.
        adapter = self._rank0_first(lambda: self.adapter_spec.factory(
            source=self.cfg.model_path, device=self.device, dtype=self.cfg.dtype, cache_dir=self.cache))
        adapter.use_template(self.cfg.template)
        self.timing["model_load_s"] = self.timing.get("model_load_s", 0.0) + time.perf_counter() - t
        return adapter

    def _rank0_first(self, fn):
        """``fn()`` on rank 0, then on the other ranks, which so see what rank 0 built or cleaned up."""
        if self.dist.distributed and not self.dist.is_main:
            self.dist.barrier()
        out = fn()
        if self.dist.distributed and self.dist.is_main:
            self.dist.barrier()
        return out

    def model_problem(self) -> str | None:
        """A cheap check, without loading anything, that the model's weights can be had; the problem if not."""
        if self.cfg.model_path:
            ok = Path(self.cfg.model_path).expanduser().exists()
            return None if ok else f"--model-path {self.cfg.model_path!r} does not exist."
        if self.adapter_spec.tiny or "/" not in self.adapter_spec.checkpoint:
            return None
        from huggingface_hub import try_to_load_from_cache

        from benchmark.storage.hub import hub_reachable

        cached = try_to_load_from_cache(self.adapter_spec.checkpoint, "config.json")
        if isinstance(cached, str) or hub_reachable():
            return None
        return (f"the model {self.adapter_spec.checkpoint!r} is not in the local Hugging Face cache and the hub "
                "is not reachable: pass --model-path DIR with a local copy.")

    def dir_for(self, regime: str, seed: int) -> Path:
        key = RunKey(self.cfg.model, self.cfg.task, self.cfg.max_per_class, self.cfg.regime_dir_name(regime), seed)
        return key.under(self.results)

    def check_existing(self, d: Path, identity: dict) -> bool:
        """True if ``d`` holds a finished run of this very configuration; error if of another one, or corrupt.

        A folder holding only the ``config.json`` of a run that failed before any work was saved does not block:
        the corrected command replaces it. An unreadable config of an unfinished run is discarded.
        """
        identity = as_stored(identity)
        want = digest(identity)
        if (d / METRICS).exists():
            m = read_finished(d)  # CorruptFileError (named file, what to do) if it fails its checks
            if m.get("config_hash") not in (None, want):
                old = {}
                if (d / CONFIG).exists():
                    try:
                        old = read_sealed_json(d / CONFIG).get("identity", {})
                    except CorruptFileError:
                        pass
                self._refuse(d, old, identity)
            return True
        if not (d / CONFIG).exists():
            return False
        try:
            old = read_sealed_json(d / CONFIG)
        except CorruptFileError as exc:
            self.log(f"[discard] {exc} The run had not finished: starting it afresh.")
            clear_run_dir(d)
            return False
        if old.get("config_hash") != want:
            if has_saved_work(d):
                self._refuse(d, old.get("identity", {}), identity)
            self.log(f"[replace] {d / CONFIG}: a run of another configuration that failed before saving anything")
            (d / CONFIG).unlink()
        return False

    def _refuse(self, d: Path, old: dict, identity: dict):
        diff = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
        raise BenchmarkError(
            f"{d} holds results of a different configuration (differs in: {', '.join(diff) or 'config_hash'}). "
            "Nothing was overwritten: use another --results-dir, or delete that folder to redo it."
        )

    # -- the protocol --------------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        cfg = self.cfg
        todo = [(r, s) for s in cfg.seeds for r in STAGES if r in cfg.regimes]
        pending, corrupt = [], []

        def check_all():
            for regime, seed in todo:
                d = self.dir_for(regime, seed)
                try:
                    finished = self.check_existing(d, cfg.identity(regime, seed))
                except CorruptFileError as exc:
                    corrupt.append(str(exc))
                    continue
                if finished:
                    self.log(f"[skip] {regime} seed {seed}: finished ({d})")
                else:
                    pending.append((regime, seed))

        self._rank0_first(check_all)  # rank 0 may clean up a failed run's folder before the others look
        if corrupt:  # never used, never silently redone: the user decides
            raise BenchmarkError("finished result(s) fail their integrity check:\n  " + "\n  ".join(corrupt))
        if pending:
            self._run_pending(pending)
        return [read_finished(self.dir_for(r, s)) for r, s in todo]

    def _run_pending(self, pending):
        cfg = self.cfg
        t = time.perf_counter()
        try:
            data = load_task(self.task_spec, Path(cfg.data_dir) if cfg.data_dir else None, cfg.max_per_class,
                             progress=cfg.progress)
        except DataError as exc:
            also = self.model_problem()  # report both missing pieces at once, not one per attempt
            raise DataError(f"{exc}\n\nAlso: {also}" if also else str(exc)) from None
        self.timing["data_load_s"] = time.perf_counter() - t
        if cfg.drop_duplicates:
            data = drop_duplicates(data)
        self._report_data(data)
        # Fail before any run starts if the probe cannot carve its validation split.
        validation_split([s.uid for s in data.splits["train"]], [s.label for s in data.splits["train"]],
                         cfg.probe.val_fraction)
        for seed in [s for r, s in pending if r == BASELINES]:  # needs CLIP only, not the MLLM
            if self.dist.distributed:  # small: rank 0 runs it alone
                if self.dist.is_main:
                    with self._lock(BASELINES, seed):
                        self._run_baselines(seed, data)
                self.dist.barrier()
                continue
            with self._lock(BASELINES, seed):
                d = self.dir_for(BASELINES, seed)
                remove_stale_temps(d)
                if self.check_existing(d, cfg.identity(BASELINES, seed)):
                    self.log(f"[skip] baselines seed {seed}: finished by another process ({d})")
                else:
                    self._run_baselines(seed, data)
        pending = [(r, s) for r, s in pending if r != BASELINES]
        if not pending:
            return
        adapter = self.load_adapter()
        self.revision = model_revision(adapter.checkpoint)
        stores, feat_s = {}, 0.0
        for split in ("train", "test"):
            stores[split], s = extract(adapter, data.splits[split], self.cache, data.fingerprint, split,
                                       progress=cfg.progress, log=self.log)
            feat_s += s
        self.timing["feature_extraction_s"] = feat_s
        state = {"adapter": adapter, "pre": None}
        if self.dist.distributed:
            # Rank 0 holds each run folder's lock for the whole group (waiting if another job has it); the other
            # ranks follow it in the same order.
            for regime, seed in pending:
                with self._lock(regime, seed) if self.dist.is_main else contextlib.nullcontext():
                    self.dist.barrier()
                    self._run_locked(regime, seed, state, data, stores)
            return
        deferred = []
        for regime, seed in pending:  # one process per run folder; one busy elsewhere is done after the others
            lock = self._lock(regime, seed)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                self.log(f"[wait] {regime} seed {seed}: another process is running it; coming back to it later")
                deferred.append((regime, seed, lock))
                continue
            try:
                self._run_locked(regime, seed, state, data, stores)
            finally:
                lock.release()
        for regime, seed, lock in deferred:
            with lock:
                self._run_locked(regime, seed, state, data, stores)

    def _lock(self, regime: str, seed: int) -> FileLock:
        d = self.dir_for(regime, seed)
        d.mkdir(parents=True, exist_ok=True)
        return FileLock(str(d / LOCK))

    def _run_locked(self, regime, seed, state, data, stores):
        d = self.dir_for(regime, seed)

        def check():
            stale = remove_stale_temps(d) if self.dist.is_main else []  # never another rank's file being written
            if stale:
                self.log(f"removed {len(stale)} temporary file(s) left by an interrupted write in {d}")
            return self.check_existing(d, self.cfg.identity(regime, seed))

        if self._rank0_first(check):
            self.log(f"[skip] {regime} seed {seed}: finished by another process ({d})")
            return
        if getattr(state["adapter"], "_tuned", False):
            state["adapter"] = self.load_adapter()  # fine-tuning changes weights: start from the checkpoint
        if regime == Regime.ZERO_SHOT and state["pre"] is None:
            state["pre"] = (pooled(stores["train"]), pooled(stores["test"]))
        self._run_one(regime, seed, state["adapter"], data, stores, state["pre"])

    def _saved_training(self, d: Path, regime: str, seed: int):
        """(training stats, trained weights) saved after training, if intact; else None (damaged: discarded)."""
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
            self.log(f"[discard] {exc} Training {regime} seed {seed} again.")
            ckpt.unlink(missing_ok=True)
            (d / TRAINING).unlink(missing_ok=True)
            return None

    def _report_data(self, data: TaskData):
        n_skip = sum(len(v) for v in data.skipped.values())
        self.log(f"task {data.spec.name} v{data.spec.version}: {len(data.classes)} classes, "
                 f"{len(data.splits['train'])} train / {len(data.splits['test'])} test images"
                 + (f", {n_skip} unreadable image(s) skipped" if n_skip else "")
                 + (f", limited to {data.limit['max_per_class']} per class" if data.limit else ""))
        if data.missing_classes:
            self.log(f"warning: {len(data.missing_classes)} declared class(es) have no images and are left out "
                     f"of the label space: {data.missing_classes}")
        if data.excluded:
            self.log(f"excluded by the task definition: {data.excluded}")
        if data.dropped_duplicates:
            self.log(f"dropped {len(data.dropped_duplicates)} test image(s) byte-identical to training images "
                     "(--drop-duplicates; listed in metrics.json under data.dropped_duplicates)")
        elif data.duplicates:
            self.log(f"warning: {len(data.duplicates)} test image(s) are byte-identical to training images, e.g. "
                     f"{data.duplicates[:3]}; they are kept (listed in metrics.json under data.duplicates; --drop-duplicates removes them)")

    def _run_baselines(self, seed: int, data: TaskData) -> dict:
        from .baselines import BaselineJob, run_baselines

        cfg = self.cfg
        d = self.dir_for(BASELINES, seed)
        identity = cfg.identity(BASELINES, seed)
        started = time.perf_counter()
        atomic_write_json(d / CONFIG, seal(config_record(identity, cfg)))
        self.log(f"[run] baselines seed {seed} -> {d}")
        job = BaselineJob(d, self.clip, tuple(cfg.clip_templates), seed, self.cache, self.device, cfg.progress)
        res = run_baselines(job, data, cfg.probe, self.log)
        zs = res["clip_zero_shot"]
        record = BaselinesRecord(
            schema_version=RESULT_SCHEMA_VERSION,
            projbench_version=__version__,
            model=cfg.model,
            checkpoint=self.clip.label,
            projector_family=self.adapter_spec.projector_family,
            task=cfg.task,
            task_version=data.spec.version,
            task_fingerprint=data.fingerprint,
            regime=BASELINES,
            lora=False,
            seed=seed,
            eval_mode="clip-similarity",
            limit=data.limit,
            config_hash=config_hash(identity),
            data={"classes": data.classes, "missing_classes": data.missing_classes,
                  "source": data.source_description, "n_train": len(data.splits["train"]),
                  "n_test": len(data.splits["test"])},
            clip={**self.clip.to_dict(), "templates": list(cfg.clip_templates), "identity": zs.get("clip_identity")},
            baselines=res,
            probe_config=cfg.probe.to_dict(),
            timing={"run_s": time.perf_counter() - started},
            provenance=provenance(),
        )
        metrics = record.to_json()
        atomic_write_json(d / METRICS, seal(metrics))
        self.log(f"[done] baselines seed {seed}: random macro-F1 {res['random']['macro_f1']:.4f}, CLIP zero-shot "
                 f"{zs['macro_f1']:.4f} ({self.clip.label}), CLIP-embedding probe {res['clip_probe']['macro_f1']:.4f}")
        return metrics

    def _run_one(self, regime, seed, adapter, data: TaskData, stores, pre):
        cfg = self.cfg
        d = self.dir_for(regime, seed)
        identity = cfg.identity(regime, seed)
        started = time.perf_counter()
        main = self.dist.is_main  # only rank 0 writes; the others compute their share and wait at barriers
        if main:
            atomic_write_json(d / CONFIG, seal(config_record(identity, cfg)))
        self.log(f"[run] {regime} seed {seed} -> {d}")
        classes, domain = data.classes, data.spec.domain
        train, test = data.splits["train"], data.splits["test"]
        training = None
        if regime != Regime.ZERO_SHOT:
            tcfg = TrainConfig(lr=cfg.lr_proj if regime == Regime.FT_PROJ else cfg.lr_e2e, epochs=cfg.epochs,
                               batch_size=cfg.global_batch_for(regime), micro_batch=cfg.micro_batch,
                               engine=cfg.engine,
                               warmup_ratio=cfg.warmup_ratio,
                               lora=cfg.lora and regime == Regime.FT_E2E, lora_rank=cfg.lora_rank, lr_lora=cfg.lr_lora,
                               gradient_checkpointing=cfg.gradient_checkpointing,
                               checkpoint_every=cfg.checkpoint_every)
            ckpt = d / CHECKPOINT
            adapter._tuned = True
            trained = self._rank0_first(lambda: self._saved_training(d, regime, seed))
            if trained is not None:  # trained before an interruption
                from benchmark.train.loop import set_trainable

                training, weights = trained
                set_trainable(adapter, regime, tcfg)
                missing = adapter.model.load_state_dict(weights, strict=False)
                if missing.unexpected_keys:
                    raise BenchmarkError(f"{ckpt} does not match the model; delete {d} and rerun.")
                adapter.model.eval()
                self.log(f"[resume] {regime} seed {seed}: training finished earlier, reusing {ckpt.name}")
            else:
                progress_file = d / TRAIN_PROGRESS
                if (d / LEGACY_TRAIN_PROGRESS).exists():  # a pickle: never loaded, whoever wrote it
                    self.log(f"[resume] {regime} seed {seed}: ignoring {LEGACY_TRAIN_PROGRESS} (old pickle format, "
                             "not loaded for safety); training from the start")
                    self.dist.barrier()  # every rank has seen it before rank 0 removes it
                    if main:
                        (d / LEGACY_TRAIN_PROGRESS).unlink()
                if progress_file.exists():
                    # rank 0 checks (reading a sharded run's whole state once, not once per rank), all follow it
                    problem = self.dist.broadcast(train_state.check(progress_file) if main else None)
                    if problem:
                        self.log(f"[discard] {problem} Training {regime} seed {seed} from the start.")
                        self.dist.barrier()  # every rank has checked the file before rank 0 removes it
                        if main:
                            train_state.remove(progress_file)
                    else:
                        self.log(f"[resume] {regime} seed {seed}: continuing training from {progress_file.name}")
                try:
                    training = finetune(adapter, regime, store=stores["train"], samples=train, classes=classes,
                                        domain=domain, seed=seed, cfg=tcfg, progress=cfg.progress,
                                        resume_file=progress_file)
                except NonFiniteLossError:
                    if main:
                        train_state.remove(progress_file)  # diverged: nothing to resume, nothing to block a rerun
                    raise
                replaced = training.get("deepspeed", {}).get("config_values_replaced")
                if replaced:
                    self.log(f"[deepspeed] projbench set its own values for these entries of the DeepSpeed config "
                             f"(their config values: {replaced}); see metrics.json training.deepspeed")
                training["global_batch_source"] = ("--global-batch" if cfg.global_batch else
                                                   f"paper default for {regime} ({PAPER_GLOBAL_BATCH[regime]})")
                state = trainable_state(adapter, regime)  # every rank: sharded weights are gathered
                if self.dist.distributed and (cfg.engine == "fsdp2" or self.dist.deepspeed):
                    # Evaluate and probe with whole weights: a fresh copy of the model with the trained ones.
                    from benchmark.train.loop import set_trainable

                    self.dist.release()  # the engine's partitions and optimizer state go before the new copy
                    adapter = self.load_adapter()
                    adapter._tuned = True
                    set_trainable(adapter, regime, tcfg)
                    adapter.model.load_state_dict(state, strict=False)
                    adapter.model.eval()
                if main:
                    atomic_write_with(ckpt, lambda tmp: save_file(state, str(tmp)))
                    atomic_write_json(d / TRAINING, seal({**training, "checkpoint_sha256": sha256_file(ckpt)}))
                    train_state.remove(progress_file)
                self.dist.barrier()
        eval_set = EvalSet(stores["test"], test, classes, domain, seed)
        if cfg.eval_mode == "generate":
            ev = evaluate_generate(adapter, eval_set, batch_size=cfg.eval_batch_size, progress=cfg.progress)
        else:
            ev = evaluate_loglik(adapter, eval_set, batch_size=cfg.eval_batch_size, progress=cfg.progress,
                                 max_rows=cfg.score_rows, score_norm=cfg.score_norm)
        probe_cfg = cfg.probe
        ytr, yte = [s.label for s in train], [s.label for s in test]
        uids = [s.uid for s in train]
        probe_preds = {"uids": [s.uid for s in test]}
        post = (pooled(stores["train"], adapter), pooled(stores["test"], adapter))
        probe_args = {"uids_train": uids, "y_test": yte, "num_classes": len(classes), "seed": seed,
                      "cfg": probe_cfg, "progress": cfg.progress}
        jobs = {"post_projection": lambda: probe_with_control(post[0], ytr, x_test=post[1], **probe_args,
                                                              desc=f"probe (post-projection, {regime})")}
        if regime == Regime.ZERO_SHOT:
            jobs["pre_projection"] = lambda: probe_with_control(pre[0], ytr, x_test=pre[1], **probe_args,
                                                                desc="probe (pre-projection)")
        # Probes are independent: with several processes each trains its share, and all get every result.
        order = sorted(jobs, key=lambda k: k != "pre_projection")  # pre-projection first, as before
        probes = {}
        for name, (summary, preds) in zip(order, self.dist.run_split([jobs[k] for k in order]), strict=True):
            probes[name], probe_preds[name] = summary, preds
        if not main:
            self.dist.barrier()  # rank 0 writes the result files
            return read_sealed_json(d / METRICS)
        atomic_write_json(d / PROBE_PREDICTIONS, probe_preds)
        paired = None if regime == Regime.ZERO_SHOT else self._paired(seed, test, yte, classes, ev["pred_indices"],
                                                                 probe_preds["post_projection"])
        execution = self.execution(adapter, regime)
        replicate = cfg.replicate_identity(regime, execution)
        artifacts = {PROBE_PREDICTIONS: sha256_file(d / PROBE_PREDICTIONS)}
        if regime != Regime.ZERO_SHOT:
            proj = projector_state(adapter)
            atomic_write_with(d / PROJECTOR, lambda tmp: save_file(proj, str(tmp)))
            artifacts[PROJECTOR] = sha256_file(d / PROJECTOR)
        atomic_write_text(d / PREDICTIONS, "".join(json.dumps(p) + "\n" for p in ev["predictions"]))
        artifacts[PREDICTIONS] = sha256_file(d / PREDICTIONS)
        record = RunRecord(
            schema_version=RESULT_SCHEMA_VERSION,
            projbench_version=__version__,
            model=cfg.model,
            checkpoint=str(adapter.checkpoint),
            # The loaded model's own family where it has one (a composed model's depends on its spec).
            projector_family=getattr(adapter, "projector_family", "") or self.adapter_spec.projector_family,
            projector_modules=self.adapter_spec.projector_modules,
            task=cfg.task,
            task_version=data.spec.version,
            task_fingerprint=data.fingerprint,
            domain=domain,
            regime=regime,
            lora=bool(cfg.lora and regime == Regime.FT_E2E),
            seed=seed,
            eval_mode=cfg.eval_mode,
            limit=data.limit,
            config_hash=config_hash(identity),
            # Runs with equal replicate hashes differ only by seed: the leaderboard averages only those.
            replicate_hash=config_hash(replicate),
            setup_hash=config_hash(cfg.setup_identity(replicate)),
            replicate_identity=as_stored(replicate),
            execution=execution,
            revision=self.revision,
            template=adapter.template_name,
            score_norm=cfg.score_norm,
            data={
                "classes": classes, "missing_classes": data.missing_classes, "source": data.source_description,
                "n_train": len(train), "n_test": len(test),
                "skipped_unreadable": {k: len(v) for k, v in data.skipped.items()},
                "skipped_uids": data.skipped,
                "excluded": data.excluded,
                "duplicates": [list(p) for p in data.duplicates],
                "dropped_duplicates": data.dropped_duplicates,
            },
            metrics={k: ev["metrics"][k] for k in ("macro_f1", "accuracy", "n", "ci95", "per_class",
                                                   "confusion_matrix", "score_norm", "length_bias",
                                                   *GENERATE_METRICS) if k in ev["metrics"]},
            probe=probes,
            paired=paired,
            probe_config=probe_cfg.to_dict(),
            training=training,
            processes=self.dist.world_size,
            distributed_backend=self.dist.backend,
            timing={**self.timing, "evaluation_s": ev["metrics"]["seconds"], "run_s": time.perf_counter() - started},
            provenance=provenance(),
            artifacts=artifacts,  # SHA-256 of the files beside it, checked before the run counts as finished
        )
        metrics = record.to_json()
        atomic_write_json(d / METRICS, seal(metrics))
        # FT-E2E keeps its trained state for `analyze` (FT-E2E model state) when it is small; a large one only
        # with --keep-checkpoints (it is the size of the LLM).
        small = (training or {}).get("trainable_parameters", float("inf")) <= KEEP_FOR_ANALYSES_MAX_PARAMS
        keep = cfg.keep_checkpoints or (regime == Regime.FT_E2E and small)
        if not keep and (d / CHECKPOINT).exists():
            (d / CHECKPOINT).unlink()
        self.dist.barrier()
        unmatched = metrics["metrics"].get("unmatched_rate")
        self.log(f"[done] {regime} seed {seed}: macro-F1 {metrics['metrics']['macro_f1']:.4f}"
                 + (f" (unmatched {unmatched:.1%})" if unmatched is not None else "")
                 + f", probe {probes['post_projection']['macro_f1']:.4f}")
        return metrics

    def _paired(self, seed, test, y_test, classes, task_pred, probe_pred) -> dict | None:
        """Gain and richness change against the zero-shot run of the same seed, on the same test images, with
        paired bootstrap intervals; None (with the reason logged) if that run's predictions are not there."""
        zs = self.dir_for(Regime.ZERO_SHOT, seed)
        try:
            read_finished(zs)  # its predictions' checksums
            zs_probe = json.loads((zs / PROBE_PREDICTIONS).read_text())
            zs_rows = [json.loads(line) for line in (zs / PREDICTIONS).read_text().splitlines() if line.strip()]
        except (OSError, ValueError, CorruptFileError):
            self.log(f"note: no paired intervals for seed {seed}: the zero-shot predictions in {zs} are missing "
                     "or damaged")
            return None
        uids = [s.uid for s in test]
        if zs_probe.get("uids") != uids or [r["uid"] for r in zs_rows] != uids:
            self.log(f"note: no paired intervals for seed {seed}: the zero-shot run saw other test images")
            return None
        index = {c: i for i, c in enumerate(classes)}
        zs_task = [index.get(r["prediction"], -1) for r in zs_rows]  # unmatched (generate) -> -1, wrong for all
        return {"gain": paired_bootstrap(y_test, task_pred, zs_task, len(classes)),
                "richness": paired_bootstrap(y_test, probe_pred, zs_probe["post_projection"], len(classes))}


def drop_duplicates(data: TaskData) -> TaskData:
    """``data`` without the test images byte-identical to a training image (``--drop-duplicates``).

    The fingerprint changes with the dropped images, so the feature cache never serves the full test split.
    """
    dropped = sorted({test_uid for _, test_uid in data.duplicates})
    if not dropped:
        return data
    gone = set(dropped)
    test = [s for s in data.splits["test"] if s.uid not in gone]
    fingerprint = digest_text("\0".join([data.fingerprint, "drop-duplicates", *dropped]))
    return replace(data, splits={**data.splits, "test": test}, fingerprint=fingerprint, dropped_duplicates=dropped)


def run(cfg: RunConfig, log=print) -> list[dict]:
    return Runner(cfg, log).run()
