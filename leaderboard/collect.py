"""Read and validate the result files under a results folder; nothing else in the leaderboard touches the disk.

A run folder is ``<model>/<task>[@max<k>]/<regime>/seed<k>/`` (:class:`benchmark.schema.RunKey`); files of every
supported schema version are read through :func:`benchmark.schema.migrate`. ``metrics.json`` is written last, so
its presence means "finished"; ``config.json`` alone means the run crashed, was interrupted or is still going.
Every problem becomes a :class:`Skipped` entry (path + reason) instead of an exception, so one bad file never hides the rest.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.schema import (  # noqa: F401  (RunKey, the file names: re-exported for the leaderboard's modules)
    CONFIG,
    FOLDER_ORDER,
    METRICS,
    SUPPORTED_SCHEMAS,
    BaselinesRecord,
    Regime,
    RunKey,
    RunRecord,
    SchemaError,
    migrate,
)
from benchmark.storage.integrity import SEAL, record_seal_problem

# Folder names of the regimes, and the optional baselines stage's folder beside them.
REGIME_DIRS = tuple(r.value for r in FOLDER_ORDER if r is not Regime.BASELINES)
BASELINES_DIR = Regime.BASELINES.value
# A metrics.json is a few KB (tens of MB at most, with thousands of skipped-image ids): anything bigger is not
# ours, and reading it would cost the whole leaderboard its time and memory.
MAX_METRICS_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Run:
    """The fields of one finished run that the leaderboard uses."""

    key: RunKey
    projector_family: str
    task_version: str
    task_fingerprint: str
    eval_mode: str
    checkpoint: str
    f1: float
    probe_post: float              # probe on post-projection features of this regime's projector
    probe_pre: float | None        # probe on pre-projection features (zero-shot runs only)
    # What the run says about how it was made (versions, commit, hashes, revision), as (label, text) pairs in a
    # fixed order; only the fields the file has (schema-1 files lack some). Shown on demand by the HTML page.
    provenance: tuple[tuple[str, str], ...] = ()
    # Added in schema 2 (None when absent, e.g. in schema-1 files: such runs are grouped as before).
    replicate_hash: str | None = None   # hash of the run identity without the seed: equal = true replicates
    setup_hash: str | None = None       # the part every regime of one setup shares (no training fields)
    identity: tuple[tuple[str, str], ...] = ()  # the replicate identity, (field, JSON value) pairs, sorted
    revision: str | None = None         # "hub@<commit>" or "local:<content hash>"
    f1_ci: tuple[float, float] | None = None         # bootstrap 95% interval over test images
    probe_post_ci: tuple[float, float] | None = None
    probe_pre_ci: tuple[float, float] | None = None
    gain_ci: tuple[float, float] | None = None       # paired bootstrap vs. the zero-shot run of the seed
    richness_ci: tuple[float, float] | None = None
    control_post: float | None = None   # control task score on the same features (shuffled labels before schema 3)
    control_pre: float | None = None
    accuracy: float | None = None       # task accuracy (absent in early files)
    unmatched_rate: float | None = None  # generate mode: share of answers that named no class
    schema_version: int = 1             # < 3: its intervals and control are the older methods
    classes: tuple[str, ...] = ()       # the label space, in the order of the probe predictions' indices
    min_class_n: int | None = None      # test images of the smallest class (schema 3)
    folder: Path | None = None          # the run folder: its predictions give the leaderboard's intervals
    artifacts: tuple[tuple[str, str], ...] = ()  # (file, SHA-256) the record gives for the files beside it


@dataclass(frozen=True)
class BaselineRun:
    """The baselines of one (model, task, seed): what an MLLM must beat (paper Tables 1 and 3)."""

    key: RunKey
    task_version: str
    task_fingerprint: str
    clip: str                      # open_clip model[/pretrained tag] used
    clip_matches: bool             # the CLIP the adapter declares for its vision encoder
    templates: tuple[str, ...]     # zero-shot prompts
    random_f1: float               # exact expected macro-F1 of a uniform random classifier
    random_accuracy: float
    clip_f1: float                 # CLIP zero-shot
    clip_accuracy: float
    clip_probe: float              # probe on CLIP's pooled image embedding


@dataclass(frozen=True, order=True)
class Skipped:
    path: str    # relative to the results folder
    reason: str


@dataclass(frozen=True)
class Collection:
    runs: tuple[Run, ...]                 # finished runs, sorted by key
    unfinished: tuple[RunKey, ...]        # config.json without metrics.json, sorted
    unreadable: tuple[RunKey, ...]        # metrics.json present but skipped (details in ``skipped``), sorted
    skipped: tuple[Skipped, ...]          # sorted by path
    baselines: tuple[BaselineRun, ...] = ()  # finished baselines stages, sorted by key


_Invalid = SchemaError  # a reason to skip one file; caught in :func:`collect`


def _field(obj: dict, dotted: str, kind):
    """``obj[a][b]...`` checked against ``kind``; a missing or mistyped field is a reason to skip the file."""
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise _Invalid(f"missing field {dotted!r}")
        cur = cur[part]
    if kind is float:
        # bool is an int in Python, and NaN/inf sneak through json.dumps; neither is a score.
        if isinstance(cur, bool) or not isinstance(cur, int | float) or not math.isfinite(cur):
            raise _Invalid(f"field {dotted!r} is not a finite number: {cur!r}")
        return float(cur)
    if not isinstance(cur, kind) or (kind is int and isinstance(cur, bool)):
        raise _Invalid(f"field {dotted!r} has type {type(cur).__name__}, expected {kind.__name__}")
    return cur


# (label, dotted path candidates): the first path present wins. Several candidates where schema versions or
# adapters name the same fact differently; a field no candidate finds is simply not shown.
PROVENANCE_FIELDS = (
    ("projbench", ("projbench_version", "provenance.versions.projbench")),
    ("git commit", ("provenance.git_commit",)),
    ("config hash", ("config_hash",)),
    ("run identity", ("replicate_hash", "identity_hash", "run_identity_hash", "provenance.identity_hash")),
    ("checkpoint", ("checkpoint",)),
    ("revision", ("revision", "model_revision", "checkpoint_revision", "provenance.revision",
                  "provenance.model_revision")),
    ("task version", ("task_version",)),
    ("task fingerprint", ("task_fingerprint",)),
    ("eval mode", ("eval_mode",)),
    ("projector", ("projector_modules",)),
    ("python", ("provenance.python",)),
    ("platform", ("provenance.platform",)),
    ("versions", ("provenance.versions",)),
    ("schema", ("schema_version",)),
    ("written at", ("provenance.written_at",)),
)


PROVENANCE_MAX_CHARS = 2000  # a field longer than this is cut (with a note): it is shown in a table cell


def _provenance_text(value, depth: int = 0) -> str:
    if depth > 3:  # a hostile or broken file could nest deeply; the page only needs a readable line
        return json.dumps(value, sort_keys=True, default=str)[:200]
    if isinstance(value, dict):  # e.g. package versions: "name version" pairs, sorted
        return ", ".join(f"{k} {_provenance_text(v, depth + 1)}"
                         for k, v in sorted(value.items(), key=lambda kv: str(kv[0])))
    if isinstance(value, list | tuple):
        return ", ".join(_provenance_text(v, depth + 1) for v in value)
    return "null" if value is None else str(value)


def provenance_of(m: dict) -> tuple[tuple[str, str], ...]:
    """The provenance fields a metrics.json carries, in PROVENANCE_FIELDS order. Never a reason to skip a run."""
    out = []
    for label, paths in PROVENANCE_FIELDS:
        for dotted in paths:
            cur = m
            for part in dotted.split("."):
                cur = cur.get(part) if isinstance(cur, dict) else None
            if cur is not None and cur != "" and cur != {}:
                text = _provenance_text(cur)
                if len(text) > PROVENANCE_MAX_CHARS:
                    text = text[:PROVENANCE_MAX_CHARS] + f" … ({len(text)} characters, cut)"
                out.append((label, text))
                break
    return tuple(out)


def _score(obj: dict, dotted: str) -> float:
    """A finite number in [0, 1] (F1, accuracy): anything else is a damaged or hand-edited file."""
    x = _field(obj, dotted, float)
    if not 0.0 <= x <= 1.0:
        raise _Invalid(f"field {dotted!r} is {x!r}, outside [0, 1]")
    return x


def _optional(obj: dict, dotted: str, kind):
    """Like :func:`_field`, but a missing field (or a null) is None: fields added after schema 1."""
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or cur.get(part) is None:
            return None
        cur = cur[part]
    if kind == "interval":
        if not (isinstance(cur, list) and len(cur) == 2):
            raise _Invalid(f"field {dotted!r} is not a [low, high] interval: {cur!r}")
        return (_field({"v": cur[0]}, "v", float), _field({"v": cur[1]}, "v", float))
    return _field({"v": cur}, "v", kind)


def _revision_label(rev) -> str | None:
    if not isinstance(rev, dict):
        return None
    if rev.get("kind") == "hub":
        return f"hub@{rev.get('commit') or 'unresolved'}"
    return f"local:{rev.get('content_hash')}"


def _load(text: str, kind: str) -> dict:
    """Parse a metrics.json, check its own checksum (if it has one), and migrate it to the current schema."""
    try:
        m = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _Invalid(f"invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
    except RecursionError:
        raise _Invalid("JSON nested too deeply to be a metrics.json") from None
    if not isinstance(m, dict):
        raise _Invalid("not a JSON object")
    if m.get("random_init") is not False and "random_init" in m:  # `plan --measure` and its GPU check write these
        raise _Invalid("a measurement on random weights (random_init: plan --measure), speed and memory only: "
                       "never a result; keep it out of the results folder")
    if isinstance(m.get("revision"), dict) and m["revision"].get("random_init"):  # a run of a skeleton checkpoint
        raise _Invalid("a run of a random-init skeleton checkpoint (revision.random_init: its weights were drawn "
                       "at load by plan --measure's skeleton), speed only: never a result; delete this run folder")
    problem = record_seal_problem(m, m.pop(SEAL, None))
    if problem:
        raise _Invalid(f"corrupt: {problem}; delete the run folder and run the same command again to recompute it")
    return migrate(m, kind)


def _artifacts(recorded) -> tuple[tuple[str, str], ...]:
    """The record's (file, SHA-256) pairs; anything else there is left for the checks to find missing."""
    if not isinstance(recorded, dict):
        return ()
    return tuple(sorted((k, v) for k, v in recorded.items() if isinstance(k, str) and isinstance(v, str)))


def parse_metrics(key: RunKey, text: str, folder: Path | None = None) -> Run:
    """Validate one metrics.json against the folder it sits in (``folder``: where it is, for its predictions)."""
    m = _load(text, RunRecord.KIND)
    model = _field(m, "model", str)
    task = _field(m, "task", str)
    regime = _field(m, "regime", str)
    lora = _field(m, "lora", bool)
    seed = _field(m, "seed", int)
    if (limit := m.get("limit", "absent")) == "absent":
        raise _Invalid("missing field 'limit'")
    run = Run(
        key=key,
        projector_family=_field(m, "projector_family", str),
        task_version=_field(m, "task_version", str),
        task_fingerprint=_field(m, "task_fingerprint", str),
        eval_mode=_field(m, "eval_mode", str),
        checkpoint=_field(m, "checkpoint", str),
        f1=_score(m, "metrics.macro_f1"),
        probe_post=_score(m, "probe.post_projection.macro_f1"),
        probe_pre=_score(m, "probe.pre_projection.macro_f1") if regime == Regime.ZERO_SHOT else None,
        provenance=provenance_of(m),
        replicate_hash=_optional(m, "replicate_hash", str),
        setup_hash=_optional(m, "setup_hash", str),
        identity=tuple(sorted((k, json.dumps(v, sort_keys=True))
                              for k, v in (_optional(m, "replicate_identity", dict) or {}).items())),
        revision=_revision_label(m.get("revision")),
        f1_ci=_optional(m, "metrics.ci95", "interval"),
        probe_post_ci=_optional(m, "probe.post_projection.ci95", "interval"),
        probe_pre_ci=_optional(m, "probe.pre_projection.ci95", "interval"),
        gain_ci=_optional(m, "paired.gain.ci95", "interval"),
        richness_ci=_optional(m, "paired.richness.ci95", "interval"),
        control_post=_optional(m, "probe.post_projection.control.macro_f1", float),
        control_pre=_optional(m, "probe.pre_projection.control.macro_f1", float),
        accuracy=_score(m, "metrics.accuracy") if "accuracy" in m["metrics"] else None,
        unmatched_rate=_optional(m, "metrics.unmatched_rate", float),
        schema_version=m["schema_version"],
        classes=tuple(c for c in (_optional(m, "data.classes", list) or []) if isinstance(c, str)),
        min_class_n=_optional(m, "metrics.interval.min_class_n", int),
        folder=folder,
        artifacts=_artifacts(m.get("artifacts")),
    )
    # The folder decides where a run is shown, so it must agree with what the run says it is: a limited run in
    # a full-run folder would otherwise be shown as a full run.
    folder_regime = Regime.FT_E2E_LORA.value if regime == Regime.FT_E2E and lora else regime
    checks = [("model", model, key.model), ("task", task, key.task), ("regime", folder_regime, key.regime),
              ("seed", seed, key.seed)]
    for name, said, folder in checks:
        if said != folder:
            raise _Invalid(f"metrics.json says {name} {said!r} but the folder says {folder!r}")
    if limit is None:
        said_limit = None
    elif isinstance(limit, dict) and isinstance(limit.get("max_per_class"), int):
        said_limit = limit["max_per_class"]
    else:
        raise _Invalid(f"field 'limit' is neither null nor {{\"max_per_class\": <int>}}: {limit!r}")
    if said_limit != key.limit:
        said = "a full run" if said_limit is None else f"limited to {said_limit} per class"
        folder = "a full run" if key.limit is None else f"limited to {key.limit} per class"
        raise _Invalid(f"metrics.json says {said} but the folder name says {folder}")
    return run


def parse_baselines(key: RunKey, text: str) -> BaselineRun:
    """Validate the metrics.json of a baselines folder against the folder it sits in."""
    m = _load(text, BaselinesRecord.KIND)
    limit = m.get("limit")
    said = {"model": _field(m, "model", str), "task": _field(m, "task", str), "regime": _field(m, "regime", str),
            "seed": _field(m, "seed", int),
            "limit": limit.get("max_per_class") if isinstance(limit, dict) else limit}
    for name, folder in (("model", key.model), ("task", key.task), ("regime", key.regime), ("seed", key.seed),
                         ("limit", key.limit)):
        if said[name] != folder:
            raise _Invalid(f"metrics.json says {name} {said[name]!r} but the folder says {folder!r}")
    clip = _field(m, "clip", dict)
    pretrained = clip.get("pretrained")
    return BaselineRun(
        key=key,
        task_version=_field(m, "task_version", str),
        task_fingerprint=_field(m, "task_fingerprint", str),
        clip=_field(m, "clip.model", str) + (f"/{pretrained}" if isinstance(pretrained, str) else ""),
        clip_matches=_field(m, "clip.matches_adapter", bool),
        templates=tuple(_field(m, "clip.templates", list)),
        random_f1=_field(m, "baselines.random.macro_f1", float),
        random_accuracy=_field(m, "baselines.random.accuracy", float),
        clip_f1=_field(m, "baselines.clip_zero_shot.macro_f1", float),
        clip_accuracy=_field(m, "baselines.clip_zero_shot.accuracy", float),
        clip_probe=_field(m, "baselines.clip_probe.macro_f1", float),
    )


LINK_REASON = ("a symbolic link; not followed (a results tree is read only inside itself): "
               "copy the runs in, or point --results at the folder it links to")


def _run_dirs(root: Path, top: Path) -> tuple[list[Path], list[Skipped]]:
    """The folders under ``top`` holding a metrics.json or config.json, sorted; and every symbolic link there
    (folder or file), reported as skipped instead of followed or silently dropped."""
    found, links = set(), []
    for here, dirs, files in os.walk(top):  # os.walk does not descend into linked folders (followlinks=False)
        here = Path(here)
        for name in dirs + files:
            if (here / name).is_symlink():
                links.append(Skipped("/".join((here / name).relative_to(root).parts), LINK_REASON))
        if any(n in (METRICS, CONFIG) and not (here / n).is_symlink() and (here / n).is_file() for n in files):
            found.add(here)
    return sorted(found), links


def collect(root: Path, under: str | None = None) -> Collection:
    """Every run under ``root``: finished, unfinished, or skipped with a reason. Sorted, so disk order is moot.

    ``under`` (e.g. ``<model>/<task folder>``) reads only the runs in that folder of ``root``.
    """
    root = Path(root)
    top = root / under if under else root
    run_dirs, skipped = _run_dirs(root, top)
    runs, unfinished, unreadable, baselines = [], [], [], []
    for d in run_dirs:
        rel = d.relative_to(root).parts
        has_metrics = (d / METRICS).is_file()
        shown = "/".join(rel + ((METRICS if has_metrics else CONFIG),))
        try:
            key = RunKey.parse(rel)
        except _Invalid as exc:
            skipped.append(Skipped(shown, str(exc)))
            continue
        if not has_metrics:
            unfinished.append(key)
            continue
        try:
            size = (d / METRICS).stat().st_size
            if size > MAX_METRICS_BYTES:
                raise _Invalid(f"{size:,} bytes, larger than any metrics.json projbench writes "
                               f"(limit {MAX_METRICS_BYTES:,}); not read")
            text = (d / METRICS).read_text(encoding="utf-8")
            if key.regime == Regime.BASELINES:
                baselines.append(parse_baselines(key, text))
            else:
                runs.append(parse_metrics(key, text, d))
        except _Invalid as exc:
            skipped.append(Skipped(shown, str(exc)))
            unreadable.append(key)
        except RecursionError:  # a structure nested deep enough to pass the parser and break a reader
            skipped.append(Skipped(shown, "JSON nested too deeply to be a metrics.json"))
            unreadable.append(key)
        except (OSError, UnicodeDecodeError) as exc:
            # The message only, not str(exc): that names the absolute path, and output must not depend on it.
            reason = exc.strerror if isinstance(exc, OSError) else f"not UTF-8 text ({exc.reason})"
            skipped.append(Skipped(shown, f"unreadable: {reason}"))
            unreadable.append(key)
    runs.sort(key=lambda r: r.key.sort_key())
    unfinished.sort(key=RunKey.sort_key)
    unreadable.sort(key=RunKey.sort_key)
    baselines.sort(key=lambda r: r.key.sort_key())
    return Collection(tuple(runs), tuple(unfinished), tuple(unreadable), tuple(sorted(skipped)), tuple(baselines))
