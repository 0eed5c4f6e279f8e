"""Aggregate collected runs into leaderboard rows, per-model summaries and the list of incomplete runs.

Pure data in, pure data out: no files, no formatting. Gains and richness changes are computed per seed (each
fine-tuned run against the zero-shot run of the same seed) and only then averaged, as the protocol asks. The %
changes are the paper's Table 2 estimator: the change of the seed-averaged means relative to the seed-averaged
baseline (over the seeds both have), not a mean of per-seed ratios (biased upwards when the baseline is small).

Only true replicates are averaged: runs whose replicate hashes (run identity without the seed) differ become
separate rows, labelled with the fields that differ. Every mean carries a 95% interval: the hierarchical
bootstrap over its runs' test predictions (seeds, probe seeds, test images within class; :mod:`.resample`), or
where those are not there the older method, marked (:mod:`.stats`).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, replace

from benchmark.schema import TRAINING_FIELDS, Regime

from .collect import BASELINES_DIR, BaselineRun, Collection, Run, RunKey, Skipped
from .resample import POST, PRE, TASK, Predictions, change_source, score_source
from .stats import Interval, Ratio, Stat, recorded
from .stats import ratio_of as _ratio  # short names: the row builder calls them dozens of times
from .stats import stat_of as _stat
from .verified import run_problems

FINETUNED = (Regime.FT_PROJ.value, Regime.FT_E2E.value)  # the regimes of a row that are compared with zero-shot
E2E_DIRS = (Regime.FT_E2E.value, Regime.FT_E2E_LORA.value)  # the folders that can fill a row's FT-E2E slot


@dataclass(frozen=True)
class Baselines:
    """A row's baselines (paper Tables 1 and 3), over the seeds of its baselines stage."""

    clips: tuple[str, ...]               # CLIP(s) used; more than one means runs disagree (see warnings)
    clip_matches: bool                   # every run used the CLIP the adapter declares for its vision encoder
    templates: tuple[str, ...]           # zero-shot prompts (of every run, deduplicated)
    random_f1: Stat                      # exact expected macro-F1 of a uniform random classifier
    random_accuracy: Stat
    clip_f1: Stat                        # CLIP zero-shot
    clip_accuracy: Stat
    clip_probe: Stat                     # probe on CLIP's pooled image embedding (Table 3)


@dataclass(frozen=True)
class Row:
    """One leaderboard row: a model on a task (full or limited), with one FT-E2E variant (full or LoRA)."""

    model: str
    task: str
    limit: int | None
    e2e_dir: str                            # "ft-e2e" or "ft-e2e-lora": which folder fills the FT-E2E slot
    projector_families: tuple[str, ...]     # normally one; more means runs disagree (see warnings)
    task_versions: tuple[str, ...]
    eval_modes: tuple[str, ...]
    seeds: tuple[int, ...]                  # every seed seen for this row, finished or not
    f1: dict[str, Stat | None]              # by regime: zero-shot, ft-proj, ft-e2e
    probe: dict[str, Stat | None]           # post-projection probe by projector: zero-shot (= original), ...
    probe_pre: Stat | None
    gain: dict[str, Stat | None]            # by fine-tuned regime, absolute
    gain_pct: dict[str, Ratio | None]       # % change of seed-averaged means (the paper's Table 2)
    richness: dict[str, Stat | None]
    richness_pct: dict[str, Ratio | None]
    missing: tuple[str, ...] = ()           # run folders of this row that are not finished (see Incomplete)
    baselines: Baselines | None = None      # random / CLIP zero-shot / CLIP-embedding probe, if run
    # F1(regime) - CLIP zero-shot F1, per seed of the regime (CLIP zero-shot is deterministic: its mean is used)
    gain_vs_clip: dict[str, Stat | None] = field(default_factory=dict)
    variant: str = ""                       # when one model/task has runs of several configurations: what
    #                                         sets this row apart ("field=value; ..."), empty otherwise
    control: dict[str, Stat | None] = field(default_factory=dict)   # control probe F1 by projector, "pre" too
    selectivity: dict[str, Stat | None] = field(default_factory=dict)  # probe - control, paired per run
    revisions: tuple[str, ...] = ()         # model revisions of the row's runs; more than one is warned about
    # by regime: the row's seeds whose run in that regime is another configuration's (shown in that row)
    elsewhere: dict[str, tuple[int, ...]] = field(default_factory=dict)
    checkpoints: tuple[str, ...] = ()       # what the row's runs loaded (a tiny twin: its cache folder)
    # runs of the row whose numbers do not follow from their stored predictions: "path: what differs"
    unverified: tuple[str, ...] = ()

    @property
    def lora(self) -> bool:
        return self.e2e_dir == Regime.FT_E2E_LORA

    def folder(self, regime: str) -> str:
        """The regime's folder name for this row (FT-E2E may live in the LoRA folder)."""
        return self.e2e_dir if regime == Regime.FT_E2E else regime


@dataclass(frozen=True)
class SummaryRow:
    """Mean over a model's tasks of the per-task mean gain and richness change, per fine-tuned regime."""

    model: str
    limit: int | None
    variant: str
    projector_families: tuple[str, ...]
    tasks: tuple[str, ...]
    e2e_dirs: tuple[str, ...]               # which FT-E2E folders the model's rows use (full and/or LoRA)
    # by regime folder (ft-proj, ft-e2e, ft-e2e-lora): per-task means, keyed by task
    gain: dict[str, dict[str, float]]
    gain_pct: dict[str, dict[str, float]]
    richness: dict[str, dict[str, float]]
    richness_pct: dict[str, dict[str, float]]


@dataclass(frozen=True)
class Incomplete:
    path: str     # the run folder, relative to the results folder
    reason: str


@dataclass(frozen=True)
class Leaderboard:
    rows: tuple[Row, ...]
    summary: tuple[SummaryRow, ...]
    incomplete: tuple[Incomplete, ...]
    skipped: tuple[Skipped, ...]
    warnings: tuple[str, ...] = field(default=())


def _group_key(model: str, task: str, limit: int | None) -> tuple:
    return (model, task, limit is not None, limit or 0)


def build(coll: Collection) -> Leaderboard:
    """The leaderboard of a collection of runs. Deterministic: only sorted inputs and exact means."""
    finished: dict[tuple, dict[str, dict[int, Run]]] = {}
    seen: dict[tuple, dict[str, set[int]]] = {}   # every (regime folder, seed) with a folder on disk
    names: dict[tuple, tuple[str, str, int | None]] = {}
    for run in coll.runs:
        k = run.key
        g = _group_key(k.model, k.task, k.limit)
        names[g] = (k.model, k.task, k.limit)
        finished.setdefault(g, {}).setdefault(k.regime, {})[k.seed] = run
        seen.setdefault(g, {}).setdefault(k.regime, set()).add(k.seed)
    base_runs: dict[tuple, list[BaselineRun]] = {}
    for b in coll.baselines:
        k = b.key
        g = _group_key(k.model, k.task, k.limit)
        names[g] = (k.model, k.task, k.limit)
        finished.setdefault(g, {})
        seen.setdefault(g, {})
        base_runs.setdefault(g, []).append(b)
    for k in coll.unfinished + coll.unreadable:
        g = _group_key(k.model, k.task, k.limit)
        names[g] = (k.model, k.task, k.limit)
        finished.setdefault(g, {})
        seen.setdefault(g, {}).setdefault(k.regime, set()).add(k.seed)

    unfinished, unreadable = set(coll.unfinished), set(coll.unreadable)
    rows, incomplete, warnings = [], {}, []
    store = Predictions()   # the runs' test predictions, read once, for the checks and the intervals
    for g in sorted(names):
        model, task, limit = names[g]
        # Both a full and a LoRA FT-E2E may exist for one model and task: each gets its own row rather than one
        # silently hiding the other. With neither, the row still shows (with FT-E2E missing).
        e2e_dirs = [d for d in E2E_DIRS if d in seen[g]] or [Regime.FT_E2E]
        for e2e_dir in e2e_dirs:
            for key in (*coll.unfinished, *coll.unreadable):
                if key.regime == BASELINES_DIR and _group_key(key.model, key.task, key.limit) == g:
                    incomplete[key] = ("config.json without metrics.json (crashed, interrupted or still running)"
                                       if key in unfinished else "metrics.json could not be used (see skipped files)")
            variants, differing = _variants(finished[g], e2e_dir)
            label = f"{model}/{task if limit is None else f'{task}@max{limit}'}"
            if differing:
                warnings.append(f"{label}: runs of different configurations are shown as separate rows, never "
                                f"averaged (they differ in: {', '.join(differing)})")
            for done, variant in variants:
                row = _row(model, task, limit=limit, e2e_dir=e2e_dir, done=done, seen=seen[g], finished=finished[g],
                           store=store)
                row = _with_missing(replace(row, variant=variant), finished[g], unfinished=unfinished,
                                    unreadable=unreadable, seen=seen[g], incomplete=incomplete)
                if base_runs.get(g):
                    row = _with_baselines(row, base_runs[g], done)
                    warnings += _baseline_warnings(row)
                rows.append(row := _with_unverified(row, done, store))
                warnings += _consistency_warnings(label + (f" [{variant}]" if variant else ""), row, done)
    return Leaderboard(
        rows=tuple(rows),
        summary=_summaries(rows),
        incomplete=tuple(Incomplete(k.path, incomplete[k]) for k in sorted(incomplete, key=RunKey.sort_key)),
        skipped=coll.skipped,
        warnings=tuple(dict.fromkeys(warnings)),  # dedupe, keep order
    )


def _with_missing(row: Row, finished, *, unfinished, unreadable, seen, incomplete) -> Row:
    """The row with its unfinished run folders; records why each is missing in ``incomplete``.

    A seed counts as missing only if no run of it finished in the folder (a run of another configuration
    finished is in another row, not missing).
    """
    missing = []
    for regime in (Regime.ZERO_SHOT,) + FINETUNED:
        folder = row.folder(regime)
        done = finished.get(folder, {})
        for seed in row.seeds:
            if seed in done:
                continue
            key = RunKey(row.model, row.task, row.limit, folder, seed)
            if key in unfinished:
                why = "config.json without metrics.json (crashed, interrupted or still running)"
            elif key in unreadable:
                why = "metrics.json could not be used (see skipped files)"
            elif folder not in seen:
                why = "regime not run"
            else:
                why = "seed not run for this regime (other regimes have it)"
            incomplete[key] = why
            missing.append(key)
    missing.sort(key=RunKey.sort_key)
    return replace(row, missing=tuple(k.path for k in missing))


def _identity_items(folder: str, run: Run) -> dict[str, str]:
    """A run's replicate identity as {field: JSON value}; training fields are named by their regime folder,
    since FT-Proj and FT-E2E of one row may legitimately differ in them."""
    return {(f"{folder}:{k}" if k in TRAINING_FIELDS else k): v for k, v in run.identity if k != "regime"}


def _variants(done: dict[str, dict[int, Run]], e2e_dir: str) -> tuple[list[tuple[dict, str]], list[str]]:
    """Split a model/task's finished runs into true-replicate sets: [(runs by folder and seed, label)], and the
    identity fields that differ between the sets (empty when there is one set).

    Runs are first split by setup (what every regime shares: the zero-shot baseline must come from it), then
    each regime folder by replicate hash; a row is one choice per folder. Runs without hashes (schema 1) form
    one set of their own, as before.
    """
    folders = (Regime.ZERO_SHOT, Regime.FT_PROJ, e2e_dir)
    setups = sorted({r.setup_hash or "" for f in folders for r in done.get(f, {}).values()}) or [""]
    combos = []
    for setup in setups:
        options = []
        for f in folders:
            by_hash: dict[str, dict[int, Run]] = {}
            for seed, r in done.get(f, {}).items():
                if (r.setup_hash or "") == setup:
                    by_hash.setdefault(r.replicate_hash or "", {})[seed] = r
            options.append([by_hash[h] for h in sorted(by_hash, key=lambda h: (min(by_hash[h]), h))] or [{}])
        combos += [dict(zip(folders, choice, strict=True)) for choice in itertools.product(*options)]
    if len(combos) == 1:
        return [(combos[0], "")], []
    items = [{k: v for f, by_seed in c.items() for r in by_seed.values() for k, v in _identity_items(f, r).items()}
             for c in combos]
    keys = sorted({k for it in items for k in it})
    differing = [k for k in keys if len({it[k] for it in items if k in it}) > 1]
    out = []
    for c, it in zip(combos, items, strict=True):
        label = "; ".join(f"{k}={_short(it[k])}" for k in differing if k in it) or "configuration not recorded"
        out.append((c, label))
    return out, differing or ["unrecorded (runs without a replicate hash)"]


def _short(value: str) -> str:
    """A JSON value as shown in a label: strings without quotes."""
    v = json.loads(value)
    return v if isinstance(v, str) else value


OLDER_CONTROL = "§"   # a control of results before schema 3: the shuffled-label control (see the legend)


def _rec(run: Run, ci) -> Interval | None:
    return recorded(ci, run.schema_version, run.min_class_n)


def _by_seed(by_seed: dict[int, Run]) -> list[Run]:
    return [by_seed[s] for s in sorted(by_seed)]


def _row_seeds(folders, done, finished, seen) -> tuple[int, ...]:
    """The seeds a row counts: those of its own finished runs, and those no configuration finished (unfinished
    or unreadable, so not yet known to be another configuration's); never a seed another configuration ran."""
    own = {s for f in folders for s in done.get(f, {})}
    pending = {s for f in folders for s in seen.get(f, set()) if s not in finished.get(f, {})}
    return tuple(sorted(own | pending))


def _elsewhere(folders: dict, done, finished, seeds) -> dict[str, tuple[int, ...]]:
    return {regime: tuple(s for s in seeds if s in finished.get(f, {}) and s not in done.get(f, {}))
            for regime, f in folders.items()}


def _row(model, task, *, limit, e2e_dir, done: dict[str, dict[int, Run]], seen: dict[str, set[int]],
         finished: dict[str, dict[int, Run]], store: Predictions) -> Row:
    folders = {Regime.ZERO_SHOT: Regime.ZERO_SHOT, Regime.FT_PROJ: Regime.FT_PROJ, Regime.FT_E2E: e2e_dir}
    runs = {regime: done.get(folder, {}) for regime, folder in folders.items()}
    mine = [r for by_seed in runs.values() for r in by_seed.values()]
    zs = runs[Regime.ZERO_SHOT]
    mark = OLDER_CONTROL if any(r.schema_version < 3 for r in mine) else ""
    seeds = _row_seeds(folders.values(), done, finished, seen)

    f1 = {regime: _stat([(s, r.f1) for s, r in by_seed.items()], {s: _rec(r, r.f1_ci) for s, r in by_seed.items()},
                        source=score_source(store, _by_seed(by_seed), TASK)) for regime, by_seed in runs.items()}
    probe = {regime: _stat([(s, r.probe_post) for s, r in by_seed.items()],
                           {s: _rec(r, r.probe_post_ci) for s, r in by_seed.items()},
                           source=score_source(store, _by_seed(by_seed), POST)) for regime, by_seed in runs.items()}
    zs_pre = {s: r for s, r in zs.items() if r.probe_pre is not None}
    probe_pre = _stat([(s, r.probe_pre) for s, r in zs_pre.items()], {s: _rec(r, r.probe_pre_ci) for s, r in zs.items()},
                      source=score_source(store, _by_seed(zs_pre), PRE))
    control = {regime: _stat([(s, r.control_post) for s, r in by_seed.items() if r.control_post is not None],
                             mark=mark) for regime, by_seed in runs.items()}
    control["pre"] = _stat([(s, r.control_pre) for s, r in zs.items() if r.control_pre is not None], mark=mark)
    selectivity = {regime: _stat([(s, r.probe_post - r.control_post) for s, r in by_seed.items()
                                  if r.control_post is not None], paired=True, mark=mark)
                   for regime, by_seed in runs.items()}
    selectivity["pre"] = _stat([(s, r.probe_pre - r.control_pre) for s, r in zs.items()
                                if r.control_pre is not None and r.probe_pre is not None], paired=True, mark=mark)
    gain, gain_pct, rich, rich_pct = {}, {}, {}, {}
    for regime in FINETUNED:
        # Paired by seed: a fine-tuned run without the zero-shot run of its seed has no baseline.
        paired = [(s, runs[regime][s], zs[s]) for s in sorted(runs[regime]) if s in zs]
        pairs = [(r, z) for _, r, z in paired]
        gain[regime] = _stat([(s, r.f1 - z.f1) for s, r, z in paired], {s: _rec(r, r.gain_ci) for s, r, _ in paired},
                             paired=True, source=change_source(store, pairs, TASK))
        gain_pct[regime] = _ratio([(s, r.f1, z.f1) for s, r, z in paired])
        rich[regime] = _stat([(s, r.probe_post - z.probe_post) for s, r, z in paired],
                             {s: _rec(r, r.richness_ci) for s, r, _ in paired}, paired=True,
                             source=change_source(store, pairs, POST))
        rich_pct[regime] = _ratio([(s, r.probe_post, z.probe_post) for s, r, z in paired])
    return Row(
        model=model, task=task, limit=limit, e2e_dir=e2e_dir,
        projector_families=tuple(sorted({r.projector_family for r in mine})),
        task_versions=tuple(sorted({r.task_version for r in mine})),
        eval_modes=tuple(sorted({r.eval_mode for r in mine})),
        seeds=seeds, elsewhere=_elsewhere(folders, done, finished, seeds), f1=f1, probe=probe, probe_pre=probe_pre,
        gain=gain, gain_pct=gain_pct, richness=rich, richness_pct=rich_pct, control=control,
        selectivity=selectivity,
        revisions=tuple(sorted({r.revision for r in mine if r.revision is not None})),
        checkpoints=tuple(sorted({r.checkpoint for r in mine})),
    )


UNVERIFIED = "✗"   # a number that does not follow from its runs' stored predictions (see the legend)


def _with_unverified(row: Row, done: dict[str, dict[int, Run]], store: Predictions) -> Row:
    """The row with every measured cell marked if any of its runs' numbers do not follow from their stored
    predictions (:mod:`.verified`): such a row is never shown as a plain result."""
    checked = [(r.key.path, run_problems(store, r)) for by_seed in done.values() for r in by_seed.values()]
    bad = sorted((path, why) for path, why in checked if why)
    if not bad:
        return row

    def marked(s):
        return None if s is None else replace(s, mark=s.mark + UNVERIFIED)

    def each(d: dict) -> dict:
        return {k: marked(v) for k, v in d.items()}

    return replace(row, f1=each(row.f1), probe=each(row.probe), probe_pre=marked(row.probe_pre),
                   gain=each(row.gain), gain_pct=each(row.gain_pct), richness=each(row.richness),
                   richness_pct=each(row.richness_pct), control=each(row.control),
                   selectivity=each(row.selectivity), gain_vs_clip=each(row.gain_vs_clip),
                   unverified=tuple(f"{path}: numbers do not follow from its stored predictions: {'; '.join(why)}"
                                    for path, why in bad))


def _with_baselines(row: Row, runs: list[BaselineRun], done: dict[str, dict[int, Run]]) -> Row:
    b = Baselines(
        clips=tuple(sorted({r.clip for r in runs})),
        clip_matches=all(r.clip_matches for r in runs),
        templates=tuple(dict.fromkeys(t for r in runs for t in r.templates)),
        random_f1=_stat([(r.key.seed, r.random_f1) for r in runs]),
        random_accuracy=_stat([(r.key.seed, r.random_accuracy) for r in runs]),
        clip_f1=_stat([(r.key.seed, r.clip_f1) for r in runs]),
        clip_accuracy=_stat([(r.key.seed, r.clip_accuracy) for r in runs]),
        clip_probe=_stat([(r.key.seed, r.clip_probe) for r in runs]),
    )
    clip = b.clip_f1.mean
    vs_clip = {regime: _stat([(s, r.f1 - clip) for s, r in done.get(row.folder(regime), {}).items()])
               for regime in (Regime.ZERO_SHOT, *FINETUNED)}
    return replace(row, baselines=b, gain_vs_clip=vs_clip)


def _baseline_warnings(row: Row) -> list[str]:
    label = f"{row.model}/{row.task if row.limit is None else f'{row.task}@max{row.limit}'}"
    out = []
    if len(row.baselines.clips) > 1:
        out.append(f"{label}: baselines of different CLIPs are averaged together: {', '.join(row.baselines.clips)}")
    if not row.baselines.clip_matches:
        out.append(f"{label}: the CLIP baselines use {', '.join(row.baselines.clips)}, not the CLIP matching the "
                   "model's vision encoder")
    return out


def _consistency_warnings(label: str, row: Row, done: dict[str, dict[int, Run]]) -> list[str]:
    """Runs averaged into one row must measure the same thing; say so when they do not."""
    runs = [r for folder in (Regime.ZERO_SHOT, Regime.FT_PROJ, row.e2e_dir) for r in done.get(folder, {}).values()]
    out = [f"{UNVERIFIED} {u}" for u in row.unverified]
    for what, attr in (("task versions", "task_version"), ("task data (fingerprints)", "task_fingerprint"),
                       ("projector families", "projector_family"), ("evaluation modes", "eval_mode"),
                       ("checkpoints", "checkpoint"), ("model revisions", "revision")):
        values = sorted({getattr(r, attr) for r in runs if getattr(r, attr) is not None})
        if len(values) > 1:
            out.append(f"{label}: runs with different {what} are averaged together: {', '.join(values)}")
    return out


def _summaries(rows: list[Row]) -> tuple[SummaryRow, ...]:
    """Per (model, limit): the mean over tasks of each task's mean gain / richness change, per regime folder."""
    groups: dict[tuple, list[Row]] = {}
    for row in rows:
        groups.setdefault(_group_key(row.model, "", row.limit) + (row.variant,), []).append(row)
    out = []
    for g in sorted(groups):
        members = groups[g]
        gain, gain_pct, rich, rich_pct = {}, {}, {}, {}
        for row in members:
            for regime in FINETUNED:
                folder = row.folder(regime)
                # A task's FT-Proj appears in both rows when it has full and LoRA FT-E2E: the same numbers, so
                # writing them twice under the same task key counts them once.
                for target, stats in ((gain, row.gain), (gain_pct, row.gain_pct), (rich, row.richness),
                                      (rich_pct, row.richness_pct)):
                    if stats[regime] is not None:
                        target.setdefault(folder, {})[row.task] = stats[regime].mean
        out.append(SummaryRow(
            model=members[0].model, limit=members[0].limit, variant=members[0].variant,
            projector_families=tuple(sorted({f for r in members for f in r.projector_families})),
            tasks=tuple(sorted({r.task for r in members})),
            e2e_dirs=tuple(d for d in E2E_DIRS if any(r.e2e_dir == d for r in members)),
            gain=gain, gain_pct=gain_pct, richness=rich, richness_pct=rich_pct,
        ))
    return tuple(out)
