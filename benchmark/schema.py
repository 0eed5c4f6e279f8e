"""The result schema: what a results folder holds and how it is laid out, spelled once for writers and readers.

A run lives in ``<results>/<model>/<task>[@max<k>]/<regime>/seed<k>/`` (:class:`RunKey`); its record is
``metrics.json`` (:class:`RunRecord`, or :class:`BaselinesRecord` for the baselines stage), written last.
Analyses live in ``<model>/<task>[@max<k>]/analyses/<analysis>/<regime>/seed<k>/analysis.json``
(:class:`AnalysisRecord`). Older files are brought to the current schema by :func:`migrate`, the one place that
knows how versions differ.

Standard library only: the leaderboard reads results through this module without importing torch or the
protocol.
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePath

from .names import folder_name_problem

# 2: run identity hash, revisions, CIs, global batch, checksums; 3: stratified BCa intervals, hierarchical over
# seeds and probe seeds (metrics.interval: how an interval was made), the control task (see docs/statistics.md)
RESULT_SCHEMA_VERSION = 3
# Older versions read as before: the fields added since read as absent. Their intervals (unstratified percentile
# bootstrap; Student t over seeds) and controls (shuffled training labels) are the older methods, and the
# leaderboard marks them so.
SUPPORTED_SCHEMAS = (1, 2, RESULT_SCHEMA_VERSION)

# -- file names of a run folder ----------------------------------------------------------------------------
METRICS = "metrics.json"
CONFIG = "config.json"
PREDICTIONS = "predictions.jsonl"
PROBE_PREDICTIONS = "probe_predictions.json"  # the probes' test predictions: paired intervals of later regimes
PROJECTOR = "projector.safetensors"
CHECKPOINT = "checkpoint.safetensors"  # trainable state between training and evaluation; removed when done
TRAINING = "training.json"             # training stats + checkpoint SHA-256, written after the checkpoint
LOCK = ".lock"                         # held by the one process working on the run folder
LEGACY_TRAIN_PROGRESS = "train_state.pt"  # pickled state of older versions: never loaded, removed on sight
TRAIN_PROGRESS = "train_state.json"    # mid-training state (+ train_state-step<k>.safetensors); removed when done
# Analyses: not metrics.json/config.json, so that the leaderboard's run collector never mistakes one for a run.
ANALYSIS_RESULT = "analysis.json"
ANALYSES_DIR = "analyses"


def results_root() -> Path:
    """The default results folder: ``$PROJBENCH_RESULTS`` or ``./results``."""
    return Path(os.environ.get("PROJBENCH_RESULTS", "results")).expanduser()


class SchemaError(ValueError):
    """A path or a record that is not what the schema says; the message names what is wrong."""


class Regime(enum.StrEnum):
    """A regime as a results folder names it; a member equals (and hashes as) its folder name.

    ``ft-e2e-lora`` is a folder only: its records say regime ``ft-e2e`` with ``lora: true``.
    """

    ZERO_SHOT = "zero-shot"
    FT_PROJ = "ft-proj"
    FT_E2E = "ft-e2e"
    FT_E2E_LORA = "ft-e2e-lora"
    BASELINES = "baselines"

    @property
    def label(self) -> str:
        """How tables name the regime's task scores."""
        return _LABELS[self][0]

    @property
    def short(self) -> str:
        """A column header's name of the regime."""
        return _LABELS[self][1]

    @property
    def state_label(self) -> str:
        """The model state a regime leaves (zero-shot evaluates the original weights)."""
        return _LABELS[self][2]

    @property
    def fine_tuned(self) -> bool:
        return self in (Regime.FT_PROJ, Regime.FT_E2E, Regime.FT_E2E_LORA)

    @property
    def recorded(self) -> Regime:
        """The regime a record of this folder says it is (LoRA FT-E2E says ``ft-e2e``)."""
        return Regime.FT_E2E if self is Regime.FT_E2E_LORA else self

    @classmethod
    def folder_of(cls, regime: str, lora: bool = False) -> Regime:
        """The folder of a recorded regime: LoRA FT-E2E runs have one of their own."""
        return cls.FT_E2E_LORA if regime == cls.FT_E2E and lora else cls(regime)


_LABELS = {  # (label, short, state label)
    Regime.ZERO_SHOT: ("zero-shot", "ZS", "original"),
    Regime.FT_PROJ: ("FT-Proj", "FT-Proj", "FT-Proj"),
    Regime.FT_E2E: ("FT-E2E", "FT-E2E", "FT-E2E"),
    Regime.FT_E2E_LORA: ("FT-E2E (LoRA)", "FT-E2E (LoRA)", "FT-E2E (LoRA)"),
    Regime.BASELINES: ("baselines", "baselines", "baselines"),
}
# The regimes of the paper's protocol, in the order a run performs them; then the optional baselines stage.
PROTOCOL_REGIMES = (Regime.ZERO_SHOT, Regime.FT_PROJ, Regime.FT_E2E)
FOLDER_ORDER = tuple(Regime)  # the order runs are listed in: zero-shot, ft-proj, ft-e2e, ft-e2e-lora, baselines

_TASK_DIR = re.compile(r"^(?P<task>.+?)(?:@max(?P<k>[0-9]+))?$")
_SEED_DIR = re.compile(r"^seed(?P<seed>-?[0-9]+)$")
LAYOUT = "<model>/<task>[@max<k>]/<regime>/seed<k>/"


def task_dir_name(task: str, limit: int | None) -> str:
    """The task folder: ``<task>``, or ``<task>@max<k>`` for a run limited to k images per class and split."""
    return task if limit is None else f"{task}@max{limit}"


def parse_task_dir(name: str) -> tuple[str, int | None]:
    """(task, limit) of a task folder name."""
    match = _TASK_DIR.match(name)
    if match is None:
        raise SchemaError(f"task folder {name!r} is not named <task>[@max<k>]")
    return match["task"], int(match["k"]) if match["k"] is not None else None


def parse_seed_dir(name: str) -> int:
    match = _SEED_DIR.match(name)
    if not match:
        raise SchemaError(f"seed folder {name!r} is not named seed<k>")
    return int(match["seed"])


@dataclass(frozen=True)
class RunKey:
    """Where a run lives: the identity the folder layout gives it."""

    model: str
    task: str
    limit: int | None  # max images per class and split; None for a full run
    regime: str        # a folder name (a :class:`Regime` value; LoRA FT-E2E is its own folder)
    seed: int

    def sort_key(self) -> tuple:
        # Full runs before limited ones; ``None`` and ints do not compare, hence the flag.
        return (self.model, self.task, self.limit is not None, self.limit or 0, FOLDER_ORDER.index(self.regime),
                self.seed)

    @property
    def task_dir(self) -> str:
        return task_dir_name(self.task, self.limit)

    @property
    def path(self) -> str:
        """Relative to the results folder, with ``/`` on every OS, so output never depends on where it lives."""
        return f"{self.model}/{self.task_dir}/{self.regime}/seed{self.seed}"

    def under(self, root: Path) -> Path:
        """The run folder under the results folder ``root``."""
        return Path(root) / self.model / self.task_dir / self.regime / f"seed{self.seed}"

    def analysis_dir(self, root: Path, analysis: str) -> Path:
        """The folder of one analysis (its folder name, e.g. ``mir-compat``) of this run's model state."""
        return Path(root) / self.model / self.task_dir / ANALYSES_DIR / analysis / self.regime / f"seed{self.seed}"

    @classmethod
    def parse(cls, rel: PurePath | str | tuple[str, ...]) -> RunKey:
        """The key of a run folder from its path relative to the results folder; :class:`SchemaError` if the
        path is not a run folder of the layout."""
        parts = tuple(rel) if isinstance(rel, tuple) else PurePath(rel).parts
        if len(parts) != 4:
            raise SchemaError(f"not in a {LAYOUT} folder")
        model, task_dir, regime, seed_dir = parts
        task, limit = parse_task_dir(task_dir)
        for what, name in (("model", model), ("task", task)):  # "café" in NFD beside NFC would be a second row
            if problem := folder_name_problem(name, portable=False):
                raise SchemaError(f"{what} folder {name!r}: {problem}")
        if regime not in FOLDER_ORDER:
            raise SchemaError(f"unknown regime folder {regime!r} (expected one of "
                              f"{', '.join(r for r in FOLDER_ORDER)})")
        return cls(model, task, limit, Regime(regime).value, parse_seed_dir(seed_dir))


# -- digests ------------------------------------------------------------------------------------------------
IDENTITY_CHARS = 16  # hex characters of a configuration's or an identity's digest


def digest_text(text: str, chars: int = IDENTITY_CHARS) -> str:
    """The first ``chars`` hex characters of the SHA-256 of ``text``."""
    return hashlib.sha256(text.encode()).hexdigest()[:chars]


def digest(obj, chars: int = IDENTITY_CHARS) -> str:
    """The digest of a JSON-able object, independent of key order: a run's ``config_hash``, ``replicate_hash``
    and ``setup_hash``, an analysis's ``identity_hash``."""
    return digest_text(json.dumps(obj, sort_keys=True, default=str), chars)


def as_stored(obj):
    """``obj`` as it reads back from JSON (tuples become lists): what a digest of a stored identity sees."""
    return json.loads(json.dumps(obj, default=str))


# Identity fields of a run that only the fine-tuned regimes have; the rest of the identity (model, task, data, evaluation,
# probe, precision) is shared by every regime of one setup, so runs of different regimes can be compared.
# ("batch_size", "grad_accum": identity fields of results written before the global batch replaced them.)
TRAINING_FIELDS = ("batch_size", "grad_accum", "epochs", "warmup_ratio", "gradient_checkpointing", "lr_proj",
                   "lr_e2e", "lora", "lora_rank", "lr_lora", "lora_dropout", "global_batch")


# -- versions -----------------------------------------------------------------------------------------------
# Top-level fields a schema-1 record lacks; they read as null (absent) after migration.
_ADDED_IN_2 = {
    "run": ("replicate_hash", "setup_hash", "replicate_identity", "execution", "revision", "template", "score_norm",
            "paired", "processes", "distributed_backend", "artifacts"),
    "baselines": (),
    "analysis": (),
}


# Schema 3 changed what existing fields mean (their intervals' and control's method), adding no top-level field
# a reader needs: ``metrics.interval`` sits inside ``metrics``. Readers tell the methods apart by the version.
_ADDED_IN_3: dict[str, tuple[str, ...]] = {"run": (), "baselines": (), "analysis": ()}


def version_problem(raw) -> str | None:
    """Why ``raw`` (a parsed record) has no schema version this projbench reads; None if it has one."""
    if not isinstance(raw, dict):
        return "not a JSON object"
    if "schema_version" not in raw:
        return "missing field 'schema_version'"
    version = raw["schema_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        return f"schema_version {version!r} is not an integer"
    if version not in SUPPORTED_SCHEMAS:
        return (f"unknown schema_version {version!r} (this projbench reads "
                f"{', '.join(map(str, SUPPORTED_SCHEMAS))}; upgrade projbench)")
    return None


def migrate(raw: dict, kind: str = "run") -> dict:
    """A record of any supported version as the current schema reads it: a new dict, the fields added since its
    version present (null). ``schema_version`` stays the one it was written with. :class:`SchemaError` if the
    version is not one this projbench reads."""
    problem = version_problem(raw)
    if problem:
        raise SchemaError(problem)
    out = dict(raw)
    for version, added in ((2, _ADDED_IN_2), (3, _ADDED_IN_3)):
        if raw["schema_version"] < version:
            for name in added[kind]:
                out.setdefault(name, None)
    return out


def kind_of(raw: dict) -> str:
    """``"baselines"`` for a baselines stage's record, ``"run"`` for a regime's."""
    return "baselines" if raw.get("regime") == Regime.BASELINES else "run"


# -- records ------------------------------------------------------------------------------------------------
class _Record:
    """JSON form of a frozen record: its fields by name; fields a file has beyond them are kept in ``extra``."""

    KIND = "run"

    def to_json(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}
        return {**(self.extra or {}), **out}

    @classmethod
    def from_json(cls, raw: dict):
        """The record of a parsed file of any supported version (missing fields read as null)."""
        data = migrate(raw, cls.KIND)
        names = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{n: data.get(n) for n in names}, extra={k: v for k, v in data.items() if k not in names})


@dataclass(frozen=True)
class RunRecord(_Record):
    """``metrics.json`` of one (regime, seed) of a model on a task: its scores and how they were made."""

    schema_version: int
    projbench_version: str
    model: str
    checkpoint: str
    projector_family: str
    projector_modules: object
    task: str
    task_version: str
    task_fingerprint: str
    domain: str
    regime: str
    lora: bool
    seed: int
    eval_mode: str
    limit: dict | None            # {"max_per_class": k} for a limited run
    config_hash: str              # digest of the run's identity: a folder holds this run, or refuses another
    replicate_hash: str | None    # the identity without the seed: runs with equal ones differ only by seed
    setup_hash: str | None        # what every regime of one setup shares
    replicate_identity: dict | None
    execution: dict | None
    revision: dict | None
    template: str | None
    score_norm: str | None
    data: dict
    metrics: dict                 # task scores: macro_f1, accuracy, ci95, per class, ...
    probe: dict                   # post_projection (and pre_projection for zero-shot) probe summaries
    paired: dict | None           # gain and richness change against zero-shot, with paired intervals
    probe_config: dict
    training: dict | None
    processes: int | None
    distributed_backend: str | None
    timing: dict
    provenance: dict
    artifacts: dict | None        # SHA-256 of the files beside it
    extra: dict | None = None

    @property
    def key(self) -> RunKey:
        limit = self.limit.get("max_per_class") if isinstance(self.limit, dict) else None
        return RunKey(self.model, self.task, limit, Regime.folder_of(self.regime, bool(self.lora)).value, self.seed)


@dataclass(frozen=True)
class BaselinesRecord(_Record):
    """``metrics.json`` of the baselines stage: random, CLIP zero-shot and the probe on CLIP's embedding."""

    KIND = "baselines"

    schema_version: int
    projbench_version: str
    model: str
    checkpoint: str
    projector_family: str
    task: str
    task_version: str
    task_fingerprint: str
    regime: str
    lora: bool
    seed: int
    eval_mode: str
    limit: dict | None
    config_hash: str
    data: dict
    clip: dict
    baselines: dict
    probe_config: dict
    timing: dict
    provenance: dict
    extra: dict | None = None


@dataclass(frozen=True)
class AnalysisRecord(_Record):
    """``analysis.json`` of one analysis of one model state (regime, seed)."""

    KIND = "analysis"

    schema_version: int
    projbench_version: str
    analysis: str
    folder: str                   # analysis name (+ variant, e.g. mir-compat)
    citation: str
    model: str
    checkpoint: str
    projector_family: str
    task: str
    task_version: str
    task_fingerprint: str
    regime: str
    seed: int
    limit: dict | None
    identity: dict
    identity_hash: str
    options: dict
    result: dict
    timing: dict
    provenance: dict
    extra: dict | None = None


def record_of(raw: dict) -> RunRecord | BaselinesRecord:
    """The record of a parsed ``metrics.json``, of the kind its regime says."""
    return (BaselinesRecord if kind_of(raw) == "baselines" else RunRecord).from_json(raw)


def _score_problem(obj: dict, dotted: str) -> str | None:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return f"missing field {dotted!r}"
        cur = cur[part]
    if isinstance(cur, bool) or not isinstance(cur, int | float) or not 0.0 <= cur <= 1.0:  # NaN fails too
        return f"field {dotted!r} is not a number in [0, 1]: {cur!r}"
    return None


def result_problem(m) -> str | None:
    """Why ``m`` (a parsed metrics.json) is not a finished result of a supported schema; None if it is.

    The core fields only, the ones every reader relies on; schema 1 files (before checksums) pass too.
    """
    if not isinstance(m, dict):
        return "not a JSON object"
    v = m.get("schema_version")
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= RESULT_SCHEMA_VERSION:
        return f"schema_version {v!r} is not an integer from 1 to {RESULT_SCHEMA_VERSION}"
    for name, kind in (("model", str), ("task", str), ("regime", str), ("seed", int)):
        if not isinstance(m.get(name), kind) or isinstance(m.get(name), bool):
            return f"field {name!r} is missing or not a {kind.__name__}"
    if m["regime"] == Regime.BASELINES:  # random / CLIP reference numbers, no task metrics of the MLLM
        return None if isinstance(m.get("baselines"), dict) else "field 'baselines' is missing"
    for dotted in ("metrics.macro_f1", "metrics.accuracy", "probe.post_projection.macro_f1"):
        problem = _score_problem(m, dotted)
        if problem:
            return problem
    return None


def config_record(identity: dict, config) -> dict:
    """``config.json``: the identity a run folder holds (and its digest) and the full configuration."""
    return {"config_hash": digest(identity), "identity": identity, "config": asdict(config),
            "schema_version": RESULT_SCHEMA_VERSION}
