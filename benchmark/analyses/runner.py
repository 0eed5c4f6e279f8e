"""``python -m benchmark analyze``: run analyses on the model states of a finished `run`, resumably.

It reuses what the run left: the task data and its cached vision features (same content address), the original
weights, ``projector.safetensors`` of FT-Proj and the trained state ``checkpoint.safetensors`` of FT-E2E (kept
by `run` when the trained state is small, <= ``KEEP_FOR_ANALYSES_MAX_PARAMS``, and always with
``--keep-checkpoints``). A missing state is reported with the `run` command that produces it; the other states
are still analysed. Results go to ``<results>/<model>/<task>[@max<k>]/analyses/<analysis>/<regime>/seed<k>/
analysis.json`` (written atomically, with provenance and an identity hash; an identical finished result is
skipped, a different one is never overwritten), and curves to ``.../analyses/<analysis>.png``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from benchmark.storage.integrity import CorruptFileError, read_finished, read_sealed_json, seal, verify_file
from benchmark.storage.paths import cache_root, results_root
from benchmark.storage.results import atomic_write_json, provenance, read_json

from .. import RESULT_SCHEMA_VERSION, __version__
from ..config import REGIMES
from ..errors import BenchmarkError
from ..registry import plugins
from ..schema import (
    ANALYSIS_RESULT,
    CHECKPOINT,
    CONFIG,
    METRICS,
    PROJECTOR,
    TRAINING,
    AnalysisRecord,
    Regime,
    RunKey,
    as_stored,
    digest,
    task_dir_name,
)
from . import AnalysisContext, AnalysisOptions, AnalysisUnsupported, folder_name


@dataclass(frozen=True)
class AnalyzeConfig:
    model: str
    task: str
    analyses: tuple[str, ...] = ()       # empty: all registered
    regimes: tuple[str, ...] = REGIMES
    seeds: tuple[int, ...] = (0,)
    max_per_class: int | None = None     # selects the limited run's folder (<task>@max<k>)
    drop_duplicates: bool = False        # require that the run dropped duplicates (its choice is always followed)
    results_dir: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    options: AnalysisOptions = field(default_factory=AnalysisOptions)
    progress: bool = True


def file_stamp(path: Path) -> str:
    st = Path(path).stat()
    return f"{st.st_size}:{st.st_mtime_ns}"


class AnalysisRunner:
    def __init__(self, cfg: AnalyzeConfig, log=print, warn=None):
        import sys

        self.cfg, self.log = cfg, log
        self.warn = warn or (lambda m: print(m, file=sys.stderr))
        reg = plugins()
        self.adapter_spec = reg.adapters.get(cfg.model)
        self.task_spec = reg.tasks.get(cfg.task)
        names = cfg.analyses or tuple(reg.analyses.names())
        self.specs = [reg.analyses.get(n) for n in names]
        for r in cfg.regimes:
            if r not in REGIMES:
                raise BenchmarkError(f"Unknown regime {r!r} for --regimes; choose from {', '.join(REGIMES)}.")
        if not cfg.seeds:
            raise BenchmarkError("--seeds is empty: give at least one seed, e.g. --seeds 0.")
        self.results = Path(cfg.results_dir) if cfg.results_dir else results_root()
        self.cache = Path(cfg.cache_dir) if cfg.cache_dir else cache_root()
        self.task_dir = self.results / cfg.model / task_dir_name(cfg.task, cfg.max_per_class)
        self.problems: list[str] = []
        self.dropped_duplicates = False  # the run's --drop-duplicates, read from its config when data is loaded

    def key(self, regime: str, seed: int) -> RunKey:
        """The run folder of one (regime folder, seed) of this model and task."""
        return RunKey(self.cfg.model, self.cfg.task, self.cfg.max_per_class, regime, seed)

    # -- what the run left ----------------------------------------------------------------------------------
    def run_command(self, regimes: str, seed: int, extra: str = "") -> str:
        c = self.cfg
        return (f"python -m benchmark run --model {c.model} --task {c.task} --regimes {regimes} --seeds {seed}"
                + (f" --max-per-class {c.max_per_class}" if c.max_per_class is not None else "")
                + (f" --results-dir {c.results_dir}" if c.results_dir else "") + extra)

    def base_config(self) -> dict:
        """The stored config of a finished run of this model and task (data, checkpoint, dtype, domain)."""
        for seed in self.cfg.seeds:
            for regime in (Regime.ZERO_SHOT, Regime.FT_PROJ, Regime.FT_E2E, Regime.FT_E2E_LORA):
                d = self.key(regime, seed).under(self.results)
                if (d / METRICS).exists() and (d / CONFIG).exists():
                    return read_json(d / CONFIG)["config"]
        others = sorted(p.name for p in (self.results / self.cfg.model).glob(f"{self.cfg.task}*") if p.is_dir())
        hint = (f" Found runs in {', '.join(others)}: pass the matching --max-per-class." if others else "")
        raise BenchmarkError(
            f"No finished run of {self.cfg.model} on {self.task_dir.name} (seeds {list(self.cfg.seeds)}) under "
            f"{self.results}.{hint} Run `{self.run_command(','.join(REGIMES), self.cfg.seeds[0])}` first.")

    def state_files(self, regime: str, seed: int) -> dict | None:
        """The trained-state files of one (regime, seed); None (and a problem reported) if missing."""
        if regime == Regime.ZERO_SHOT:
            return {}
        d = self.key(regime, seed).under(self.results)
        if regime == Regime.FT_PROJ:
            if (d / METRICS).exists() and (d / PROJECTOR).exists():
                read_finished(d)  # checksums of the result and its projector; CorruptFileError names the file
                return {"projector": d / PROJECTOR}
            self.problems.append(f"FT-Proj state (seed {seed}) missing: no finished run with {PROJECTOR} in {d}. "
                                 f"Produce it with `{self.run_command('ft-proj', seed)}`.")
            return None
        if (d / METRICS).exists() and (d / CHECKPOINT).exists():
            read_finished(d)
            verify_file(d / CHECKPOINT, read_sealed_json(d / TRAINING).get("checkpoint_sha256"))
            return {"checkpoint": d / CHECKPOINT}
        lora = self.key(Regime.FT_E2E_LORA, seed).under(self.results)
        if (d / METRICS).exists():
            fix = (f"the run deleted its trained LLM weights ({CHECKPOINT}; kept automatically only for trained "
                   f"states under 200M parameters). Delete {d} and rerun "
                   f"`{self.run_command('ft-e2e', seed, ' --keep-checkpoints')}`.")
        elif (lora / METRICS).exists():
            fix = f"only a LoRA FT-E2E run exists ({lora}); analyze reads full FT-E2E states. Run " \
                  f"`{self.run_command('ft-e2e', seed)}` (without --lora)."
        else:
            fix = f"no finished FT-E2E run in {d}. Produce it with `{self.run_command('ft-e2e', seed)}`."
        self.problems.append(f"FT-E2E state (seed {seed}) missing: {fix}")
        return None

    # -- running ----------------------------------------------------------------------------------------------
    def run(self) -> list[Path]:
        from ..protocol import resolve_device

        base = self.base_config()
        todo = []  # (seed, regime, trained-state files)
        for seed in self.cfg.seeds:
            for regime in self.cfg.regimes:
                files = self.state_files(regime, seed)
                if files is not None:
                    todo.append((seed, regime, files))
        for p in self.problems:
            self.warn(f"[missing] {p}")
        if not todo:
            raise BenchmarkError("No model state to analyse: " + " ".join(self.problems))
        data = self._load_data(base, drop_duplicates=self.duplicate_handling(base, todo))
        device = resolve_device(self.cfg.device)
        written: list[Path] = []
        stores = None
        for seed, regime, files in todo:
            state = {"regime": regime, "files": {k: file_stamp(v) for k, v in files.items()}}
            pending = self._pending(data, base, seed=seed, regime=regime, state=state)
            if not pending:
                continue
            adapter = self.adapter_spec.factory(source=base.get("model_path"), device=device,
                                                dtype=base.get("dtype"), cache_dir=self.cache)
            adapter.use_template(base.get("template"))  # the prompt the run used (schema-1 runs: the default)
            if stores is None:
                stores = self._feature_stores(adapter, data)
            hidden = HiddenStates(self, adapter=adapter, data=data, stores=stores, state=state, seed=seed)
            applied = False
            # Analyses of the original weights first (they read the state's files), then the state is applied.
            for spec, out, identity in sorted(pending, key=lambda p: not p[0].on_original_model):
                if not spec.on_original_model and not applied:
                    self.apply_state(adapter, regime, files)
                    applied = True
                hidden.in_state = applied or regime == Regime.ZERO_SHOT
                ctx = AnalysisContext(adapter=adapter, regime=regime, seed=seed, data=data, stores=stores,
                                      hidden=hidden, options=self.cfg.options, state_files=files,
                                      progress=self.cfg.progress)
                path = self._execute(spec, ctx, out=out, identity=identity, hidden=hidden)
                if path is not None:
                    written.append(path)
        return written

    def duplicate_handling(self, base: dict, todo: list[tuple]) -> bool:
        """Whether the run dropped the test images byte-identical to training images (its ``--drop-duplicates``):
        the analyses test on the run's own test images, so they follow the run's choice. Every analysed state's
        run must have made the same choice, and ``--drop-duplicates`` given to `analyze` must agree with it."""
        dropped = bool(base.get("drop_duplicates", False))
        for seed, regime, _files in todo:
            d = self.key(regime, seed).under(self.results)
            if (d / CONFIG).exists() and bool(read_json(d / CONFIG)["config"].get("drop_duplicates")) != dropped:
                raise BenchmarkError(
                    f"The runs of {self.task_dir.name} disagree on --drop-duplicates ({d} "
                    f"{'keeps' if dropped else 'drops'} the duplicates, another state's run "
                    f"{'drops' if dropped else 'keeps'} them): the analyses of the states would test on different "
                    "images. Rerun the odd run with the others' setting, or analyse the states separately "
                    "(--regimes).")
        if self.cfg.drop_duplicates and not dropped:
            raise BenchmarkError(
                f"--drop-duplicates: the run of {self.task_dir.name} kept the test images byte-identical to "
                "training images, and the analyses test on the run's test images. Omit --drop-duplicates to "
                f"analyse that run, or rerun it with `{self.run_command(','.join(self.cfg.regimes), self.cfg.seeds[0])} "
                "--drop-duplicates` (into another --results-dir) first.")
        return dropped

    def _load_data(self, base: dict, *, drop_duplicates: bool):
        from ..run.data import drop_duplicates as without_duplicates
        from ..tasks.base import load_task

        task_spec = self.task_spec
        if base.get("domain"):
            from dataclasses import replace

            task_spec = replace(task_spec, domain=base["domain"])
        data = load_task(task_spec, Path(base["data_dir"]) if base.get("data_dir") else None,
                         self.cfg.max_per_class, progress=self.cfg.progress)
        self.dropped_duplicates = drop_duplicates
        if not drop_duplicates:
            if data.duplicates:
                self.warn(f"warning: {len(data.duplicates)} test image(s) are byte-identical to training images; "
                          "the run kept them, so the analyses do too (its --drop-duplicates removes them)")
            return data
        data = without_duplicates(data)
        self.log(f"dropped {len(data.dropped_duplicates)} test image(s) byte-identical to training images, as the "
                 "run did (--drop-duplicates)")
        return data

    def _feature_stores(self, adapter, data) -> dict:
        from benchmark.storage.features import extract

        return {s: extract(adapter, data.splits[s], cache_dir=self.cache,
                           task_fingerprint=data.fingerprint, split=s,
                           progress=self.cfg.progress)[0] for s in ("train", "test")}

    def _pending(self, data, base: dict, *, seed: int, regime: str, state: dict) -> list[tuple]:
        """(spec, output folder, identity) of every analysis of this state not finished yet."""
        pending = []
        for spec in self.specs:
            out = self.key(regime, seed).analysis_dir(self.results, folder_name(spec, self.cfg.options))
            # The method's version and the run's duplicate handling are part of the identity: a result of an
            # older definition, or of a test split with the duplicates in, is never taken for this one.
            identity = {"analysis": spec.name, "version": spec.version, "regime": regime, "seed": seed,
                        "state": state, "drop_duplicates": self.dropped_duplicates,
                        "task_fingerprint": data.fingerprint, "checkpoint": base.get("model_path"),
                        "dtype": base.get("dtype"),
                        "options": {k: getattr(self.cfg.options, k) for k in spec.options}}
            if self._finished(out, identity):
                self.log(f"[skip] {spec.name} {regime} seed {seed}: finished ({out})")
                continue
            pending.append((spec, out, identity))
        return pending

    def _execute(self, spec, ctx: AnalysisContext, *, out: Path, identity: dict, hidden: HiddenStates) -> Path | None:
        """Run one analysis and write its record; None if it refused the adapter."""
        self.log(f"[analyze] {spec.name} {ctx.regime} seed {ctx.seed} -> {out}")
        hidden.seconds = 0.0  # extraction time, charged to the analysis that triggered it
        start = time.perf_counter()
        try:
            result = spec.execute(ctx)  # refused at once if the adapter lacks what it requires
        except AnalysisUnsupported as exc:
            self.problems.append(f"{spec.name} refused on {self.cfg.model}: {exc}")
            self.warn(f"[refused] {spec.name} on {self.cfg.model} ({ctx.regime}): {exc}")
            return None
        data = ctx.data
        record = AnalysisRecord(
            schema_version=RESULT_SCHEMA_VERSION, projbench_version=__version__,
            analysis=spec.name, folder=folder_name(spec, self.cfg.options), citation=spec.citation,
            model=self.cfg.model, checkpoint=str(ctx.adapter.checkpoint),
            projector_family=self.adapter_spec.projector_family, task=self.cfg.task,
            task_version=data.spec.version, task_fingerprint=data.fingerprint, regime=ctx.regime,
            seed=ctx.seed, limit=data.limit, identity=identity,
            identity_hash=digest(identity), options=asdict(self.cfg.options),
            result=result,
            timing={"seconds": time.perf_counter() - start, "hidden_s": hidden.seconds},
            provenance=provenance(),
        )
        atomic_write_json(out / ANALYSIS_RESULT, seal(record.to_json()))  # checksum of its own content
        return out / ANALYSIS_RESULT

    def _finished(self, out: Path, identity: dict) -> bool:
        if not (out / ANALYSIS_RESULT).exists():
            return False
        try:
            old = read_sealed_json(out / ANALYSIS_RESULT)
        except CorruptFileError as exc:
            raise CorruptFileError(exc.path, exc.reason, f"Delete the folder {out} and run the same command "
                                   "again to recompute it.") from None
        identity = as_stored(identity)
        if old.get("identity_hash") == digest(identity):
            return True
        diff = sorted(k for k in set(old.get("identity", {})) | set(identity)
                      if old.get("identity", {}).get(k) != identity.get(k))
        if "version" in diff:
            raise BenchmarkError(
                f"{out} holds a result of an older definition of {identity['analysis']} (version "
                f"{old.get('identity', {}).get('version', 1)}, now {identity['version']}; see `list analyses`). "
                "Nothing was overwritten: delete that folder to recompute it, or use another --results-dir.")
        raise BenchmarkError(
            f"{out} holds an analysis of a different configuration (differs in: {', '.join(diff)}). Nothing was "
            "overwritten: use another --results-dir, or delete that folder to redo it.")

    @staticmethod
    def apply_state(adapter, regime: str, files: dict) -> None:
        """Load a regime's trained weights into a freshly loaded (original) adapter."""
        from safetensors.torch import load_file

        if regime == Regime.FT_PROJ:
            state = load_file(str(files["projector"]))
            adapter.projector_module().load_state_dict({k: v.to(adapter.dtype) for k, v in state.items()})
        elif regime == Regime.FT_E2E:
            state = load_file(str(files["checkpoint"]))
            result = adapter.model.load_state_dict({k: v.to(adapter.dtype) for k, v in state.items()}, strict=False)
            if result.unexpected_keys:
                raise BenchmarkError(
                    f"{files['checkpoint']} does not match the model (e.g. {result.unexpected_keys[:3]}): it was "
                    "trained with another checkpoint or with LoRA. Rerun the FT-E2E run.")
        adapter.model.eval()


class HiddenStates:
    """``ctx.hidden(split)``: the LLM's per-layer image-token states of one model state, extracted on first use
    and cached on disk (each split opened and verified once)."""

    def __init__(self, runner: AnalysisRunner, *, adapter, data, stores: dict, state: dict, seed: int):
        self.runner, self.adapter, self.data, self.stores = runner, adapter, data, stores
        self.state, self.seed = state, seed
        self.in_state = False  # the adapter holds the weights of this state (not still the original ones)
        self.seconds = 0.0
        self._opened: dict = {}

    def __call__(self, split: str):
        from .hidden import HiddenRequest, extract_hidden

        if not self.in_state:  # the weights are still the original ones: their states are not this state's
            raise AnalysisUnsupported("an analysis on the original weights (on_original_model) cannot "
                                      "read the hidden states of a trained state")
        if split not in self._opened:
            cfg, data = self.runner.cfg, self.data
            request = HiddenRequest(data.fingerprint, split, self.state, self.seed, data.spec.domain, data.classes,
                                    tokens_per_image=cfg.options.tokens_per_image)
            self._opened[split], secs = extract_hidden(
                self.adapter, request, samples=data.splits[split], features=self.stores[split],
                cache_dir=self.runner.cache, batch_size=cfg.options.batch_size, progress=cfg.progress)
            self.seconds += secs
        return self._opened[split]
