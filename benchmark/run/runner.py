"""The orchestration of one `run`: lock → check → for each stage → record → write, over regimes and seeds.

For each seed: zero-shot evaluation (+ probes of the pre-projection features and of the original projector),
FT-Proj and FT-E2E (train from cached features, evaluate, probe the fine-tuned projector), and optionally the
baselines. Every (regime, seed) is a run folder whose ``metrics.json`` is written last; a finished one is skipped,
an interrupted one resumes from its last saved stage (see ``train`` for the resume markers).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import torch

from .. import distributed
from ..config import BASELINES, STAGES, RunConfig
from ..errors import BenchmarkError
from ..registry import plugins
from ..schema import CONFIG, Regime, config_record, digest
from ..storage.confined import confined
from ..storage.features import extract, model_revision
from ..storage.integrity import CorruptFileError, read_finished, seal
from ..storage.paths import cache_root, results_root
from ..storage.random_init import RANDOM_INIT_MARKER
from ..storage.results import atomic_write_json, remove_stale_temps
from . import folders
from .baselines import baselines_stage
from .data import load_run_data, model_problem
from .evaluate import evaluation_stage, pre_projection_features, probe_stage
from .record import write_run
from .resolved import ModelState, ResolvedRun, RunSetting
from .train import training_stage

config_hash = digest  # the digest of a run's identity (kept under this name for callers)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class Runner:
    def __init__(self, cfg: RunConfig, log=print):
        from ..baselines import choose_clip
        from ..validation import resolve

        self.results = Path(cfg.results_dir) if cfg.results_dir else results_root()
        self.cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_root()
        # Before anything is loaded or written (or a process group joined): a bad setting costs one line, not a
        # crash after feature extraction. The training layout is resolved here, once, for the launched processes.
        self.plan = resolve(cfg, processes=distributed.launched_world_size(), results_dir=self.results,
                            cache_dir=self.cache)
        reg = plugins()
        self.adapter_spec = reg.adapters.get(cfg.model)
        self.task_spec = reg.tasks.get(cfg.task)
        if cfg.domain:
            self.task_spec = replace(self.task_spec, domain=cfg.domain)
        # Resolved once, so that the run identity names the CLIP actually used, not "the adapter's default".
        declared = self.adapter_spec.clip
        if callable(declared):  # the encoder depends on the checkpoint (e.g. a composed model's spec)
            declared = declared(cfg.model_path)
        self.clip = choose_clip(cfg.model, declared, cfg.clip_model, cfg.clip_pretrained)
        self.cfg = cfg = replace(cfg, clip_model=self.clip.model, clip_pretrained=self.clip.pretrained)
        self.dist = distributed.setup(cfg.device, cfg.engine)
        if self.dist.world_size != self.plan.processes:  # e.g. accelerate on a machine it reads differently
            self.plan = resolve(cfg, processes=self.dist.world_size, results_dir=self.results, cache_dir=self.cache)
        self.dist.check_training_dtype(cfg.dtype)
        self.device = self.dist.device
        self.log = self.dist.main_only(log)  # one log for the whole run
        self.timing: dict[str, float] = {}
        self.num_processes = self.dist.world_size  # recorded; results do not depend on it
        self.revision: dict | None = None
        self._pre = None  # the pooled pre-projection features, the same for every zero-shot seed

    def load_adapter(self):
        t = time.perf_counter()
        # Rank 0 loads first: a tiny twin is built into the shared cache once, not by every process at once.
        adapter = self.dist.rank0_first(lambda: self.adapter_spec.factory(
            source=self.cfg.model_path, device=self.device, dtype=self.cfg.dtype, cache_dir=self.cache))
        adapter.use_template(self.cfg.template)
        self.timing["model_load_s"] = self.timing.get("model_load_s", 0.0) + time.perf_counter() - t
        return adapter

    def model_problem(self) -> str | None:
        return model_problem(self.cfg, self.adapter_spec)

    def dir_for(self, regime: str, seed: int) -> Path:
        """The run folder, refused (:class:`OutsideRootError`) if it goes through a symbolic link."""
        return confined(self.cfg.run_key(regime, seed).under(self.results), self.results, "run folder")

    def check_existing(self, d: Path, identity: dict) -> bool:
        return folders.check_existing(d, identity, self.log)

    # -- the protocol --------------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        todo = [(r, s) for s in self.cfg.seeds for r in STAGES if r in self.cfg.regimes]
        pending, corrupt = [], []

        def check_all():
            for regime, seed in todo:
                d = self.dir_for(regime, seed)
                try:
                    finished = self.check_existing(d, self.cfg.identity(regime, seed))
                except CorruptFileError as exc:
                    corrupt.append(str(exc))
                    continue
                if finished:
                    self.log(f"[skip] {regime} seed {seed}: finished ({d})")
                else:
                    pending.append((regime, seed))

        self.dist.rank0_first(check_all)  # rank 0 may clean up a failed run's folder before the others look
        if corrupt:  # never used, never silently redone: the user decides
            raise BenchmarkError("finished result(s) fail their integrity check:\n  " + "\n  ".join(corrupt))
        if pending:
            self._run_pending(pending)
        return [read_finished(self.dir_for(r, s)) for r, s in todo]

    def _run_pending(self, pending):
        t = time.perf_counter()
        data = load_run_data(self.cfg, self.task_spec, model_problem=self.model_problem, log=self.log)
        self.timing["data_load_s"] = time.perf_counter() - t
        for seed in [s for r, s in pending if r == BASELINES]:  # needs CLIP only, not the MLLM
            run = self._resolved(BASELINES, seed, data, {})
            self.dist.on_main(lambda run=run: self._run_folder_locked(run, baselines_stage))  # small: rank 0 alone
        pending = [(r, s) for r, s in pending if r != BASELINES]
        if not pending:
            return
        adapter = self.load_adapter()
        self.revision = model_revision(adapter.checkpoint)
        if self.revision.get("random_init"):
            self.log(f"[warning] {adapter.checkpoint} is marked random-init ({RANDOM_INIT_MARKER}): its weights are "
                     "drawn at load. This run measures speed only; its records say random_init and the leaderboard "
                     "refuses them.")
        stores, feat_s = {}, 0.0
        for split in ("train", "test"):
            stores[split], s = extract(adapter, data.splits[split], cache_dir=self.cache,
                                       task_fingerprint=data.fingerprint, split=split,
                                       progress=self.cfg.progress, log=self.log)
            feat_s += s
        self.timing["feature_extraction_s"] = feat_s
        model = ModelState(load=self.load_adapter, adapter=adapter)
        folders.run_each_locked(
            pending, lock_for=lambda r, s: folders.folder_lock(self.dir_for(r, s)), dist=self.dist, log=self.log,
            work=lambda r, s: self._run_folder(self._resolved(r, s, data, stores), model))

    def _resolved(self, regime: str, seed: int, data, stores) -> ResolvedRun:
        setting = RunSetting(adapter_spec=self.adapter_spec, clip=self.clip, cache=self.cache,
                             revision=self.revision, timing=self.timing, plan=self.plan)
        return ResolvedRun(cfg=self.cfg, data=data, stores=stores, key=self.cfg.run_key(regime, seed), regime=regime,
                           results=self.results, dist=self.dist, log=self.log, setting=setting)

    def _finished(self, run: ResolvedRun) -> bool:
        """Whether another job finished ``run`` meanwhile (leftover temporary files removed first)."""
        d = run.folder
        stale = remove_stale_temps(d) if self.dist.is_main else []  # never another rank's file being written
        if stale:
            self.log(f"removed {len(stale)} temporary file(s) left by an interrupted write in {d}")
        finished = self.check_existing(d, run.identity)
        if finished:
            self.log(f"[skip] {run.regime} seed {run.seed}: finished by another process ({d})")
        return finished

    def _run_folder_locked(self, run: ResolvedRun, stage) -> None:
        with folders.folder_lock(run.folder):
            if not self._finished(run):
                stage(run)

    def _run_folder(self, run: ResolvedRun, model: ModelState) -> None:
        """One (regime, seed) under its folder's lock: check, then the stages, then the record."""
        if self.dist.rank0_first(lambda: self._finished(run)):
            return
        model.original()  # fine-tuning changed the weights: start from the checkpoint's
        if run.regime == Regime.ZERO_SHOT and self._pre is None:
            self._pre = pre_projection_features(run.stores)
        started = time.perf_counter()
        self.dist.on_main(lambda: atomic_write_json(run.folder / CONFIG, seal(config_record(run.identity, self.cfg))))
        self.log(f"[run] {run.regime} seed {run.seed} -> {run.folder}")
        training = None if run.regime == Regime.ZERO_SHOT else training_stage(run, model)
        ev = evaluation_stage(run, model.adapter)
        probes, probe_preds = probe_stage(run, model.adapter, self._pre)

        def write():
            metrics = write_run(run, model.adapter, ev=ev, probes=probes, probe_preds=probe_preds,
                                training=training, started=started)
            unmatched = metrics["metrics"].get("unmatched_rate")
            self.log(f"[done] {run.regime} seed {run.seed}: macro-F1 {metrics['metrics']['macro_f1']:.4f}"
                     + (f" (unmatched {unmatched:.1%})" if unmatched is not None else "")
                     + f", probe {probes['post_projection']['macro_f1']:.4f}")

        self.dist.on_main(write)  # rank 0 writes the result files; the others wait for them


def run(cfg: RunConfig, log=print) -> list[dict]:
    return Runner(cfg, log).run()
