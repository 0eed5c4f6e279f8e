"""Render a :class:`~.table.Leaderboard` as Markdown, for publishing: the tables of :mod:`.columns`, in sections.

Nothing here reads files, clocks or the environment, so the same leaderboard always gives the same bytes.
"""

from __future__ import annotations

import html

from tabulate import tabulate

from benchmark.schema import Regime

from . import reference
from .columns import (
    CHANGES_TABLE,
    MISSING,
    NOT_SIGNIFICANT,
    OLDER_METHOD,
    REGIME_LABELS,
    SCORES_TABLE,
    SMALL_CLASSES,
    UNDEFINED,
    baselines_table,
    control_table,
    has_controls,
    number,
    summary_table,
    table,
)
from .table import OLDER_CONTROL, UNVERIFIED, Leaderboard, Row, SummaryRow
from .verdict import ABOUT, groups, row_verdicts, title


def md_text(text: str) -> str:
    """Text from folder names or files as Markdown shows it: raw HTML escaped (Markdown renderers pass it through,
    so ``<img onerror=...>`` in a model folder's name would otherwise be markup), "|" escaped (it splits a cell)."""
    return html.escape(text, quote=False).replace("|", "\\|")


def code_span(text: str) -> str:
    """``text`` as an inline code span (HTML is not interpreted there); a backtick inside cannot end it."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def _md_table(headers: list[str], rows: list[list[str]]) -> str:
    rows = [[md_text(c) for c in r] for r in rows]
    # disable_numparse: cells are already formatted; tabulate must not re-round or re-align them as numbers.
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _scores_md(rows: list[Row]) -> str:
    return _md_table(*table(SCORES_TABLE, rows))


def _changes_md(rows: list[Row]) -> str:
    return _md_table(*table(CHANGES_TABLE, rows))


def _control_md(rows: list[Row]) -> str:
    return _md_table(*control_table(rows))


def _baselines_md(rows: list[Row]) -> str:
    return _md_table(*baselines_table(rows))


def _summary_md(summary: list[SummaryRow]) -> str:
    return _md_table(*summary_table(summary))


def _runs_section_md(title: str, blurb: str, rows: list[Row], summary: list[SummaryRow]) -> list[str]:
    out = [f"## {title}", "", blurb, ""]
    if not rows:
        return out + ["No runs of this kind yet.", ""]
    out += ["### Task and probe macro-F1", "", _scores_md(rows), ""]
    out += ["### Task gain and richness change (vs. zero-shot and the original projector)", "",
            _changes_md(rows), ""]
    if has_controls(rows):
        out += ["### Control task (Hewitt & Liang: a fixed random label per cluster of the features; selectivity = probe − control)", "",
                _control_md(rows), ""]
    out += ["### Summary per model (mean over tasks of the per-task means)", "", _summary_md(summary), ""]
    with_baselines = [r for r in rows if r.baselines is not None]
    if with_baselines:
        out += ["### Baselines: does the model beat its own vision encoder? (paper Tables 1 and 3)", "",
                "Random: exact expected macro-F1 of a uniform random guess. CLIP ZS: open_clip zero-shot with the "
                "CLIP shown. Probe CLIP emb.: the probe MLP on CLIP's pooled image embedding (Table 3), next to "
                "the probe on the model's patch-mean pre-projection features. \"X − CLIP ZS\": the model's F1 "
                "minus CLIP zero-shot F1.", "", _baselines_md(with_baselines), ""]
    return out


def _reference_md() -> list[str]:
    out = ["## Reference: published paper numbers (not measured by projbench)", "",
           f"{reference.MODEL}, projector: {reference.PROJECTOR_FAMILY}, macro-F1 as reported in {reference.SOURCE}. "
           "The paper's setup differs from projbench's protocol (free-text generation with sampling; probes "
           "early-stopped on the test split): compare trends, not decimals. "
           "Changes are computed from the reported numbers; the paper gives no spread over seeds.", ""]
    regimes = (Regime.ZERO_SHOT, Regime.FT_PROJ, Regime.FT_E2E)
    headers = ["Task"] + [f"{REGIME_LABELS[g]} F1" for g in regimes] + [
        "Probe orig. proj.", "Probe FT-Proj proj.", "Probe FT-E2E proj."]
    body = [[r.task] + [number(r.f1(g), "score") for g in regimes] + [number(r.probe(g), "score") for g in regimes]
            for r in reference.ROWS]
    out += [_md_table(headers, body), ""]

    def pct(x):
        return UNDEFINED if x is None else number(x, "pct")

    headers = ["Task"]
    for what in ("Gain", "Richness"):
        for g in (Regime.FT_PROJ, Regime.FT_E2E):
            headers += [f"{what} {REGIME_LABELS[g]}", f"{what} {REGIME_LABELS[g]} %"]
    body = []
    for r in reference.ROWS:
        line = [r.task]
        for absolute, relative in ((r.gain, r.gain_pct), (r.richness, r.richness_pct)):
            for g in (Regime.FT_PROJ, Regime.FT_E2E):
                line += [number(absolute(g), "delta"), pct(relative(g))]
        body.append(line)
    out += [_md_table(headers, body), ""]
    headers = ["Task", "Random F1", "CLIP ZS F1", "Probe CLIP emb. (Table 3)", "ZS − CLIP ZS", "FT-Proj − CLIP ZS",
               "FT-E2E − CLIP ZS"]
    body = [[r.task, number(r.random, "score"), number(r.clip_zero_shot, "score"), number(r.clip_probe, "score")]
            + [number(r.gain_vs_clip(g), "delta") for g in regimes] for r in reference.ROWS]
    baselines = ["Baselines (Table 1: uniform random and CLIP ViT-L/14-336 zero-shot; Table 3: MLP on the CLIP image "
            "embedding), and LLaVA-1.5's F1 read against CLIP zero-shot:", "", _md_table(headers, body), ""]

    return out + baselines


LEGEND = [
    "- **F1**: macro-F1 on the task's test split, per regime: ZS (zero-shot), FT-Proj (projector fine-tuned), "
    "FT-E2E (projector + LLM fine-tuned; \"(LoRA)\" when the LLM was tuned with LoRA instead of fully).",
    "- **Probe**: macro-F1 of an MLP probe on mean-pooled image features, taken before the projector "
    "(pre-proj.) or after the original, FT-Proj or FT-E2E projector.",
    "- **Gain** = F1(regime) − F1(zero-shot); **Richness** = probe(regime's projector) − probe(original "
    "projector); **%**: the change of the seed-averaged means relative to the seed-averaged zero-shot F1 / "
    "original probe, over the seeds both have (the paper's Table 2 estimator).",
    "- Changes are computed per seed (each run against the zero-shot run of its seed), then aggregated: "
    "mean ± sample std over seeds, std only with more than one seed.",
    "- **[low, high]**: 95% interval of the mean over seeds, the same method for any number of seeds: a "
    "hierarchical bootstrap of the runs' test predictions (the seeds drawn with replacement, then the probe "
    "seeds within each, then the test images within each class, so the class sizes stay those of the split; "
    "changes paired by seed), with bias-corrected and accelerated (BCa) end points widened for the small "
    "samples. It covers test-image sampling, seed-to-seed training variation and probe retraining, not other "
    f"test sets or tasks. {NOT_SIGNIFICANT}: the change's interval includes 0 (two-sided p ≥ 0.05).",
    f"- {OLDER_METHOD}: interval by the older method (results without their test predictions, e.g. written "
    "before schema 3): Student t over seeds with two or more seeds (none where the seeds agree exactly), else "
    "the run's own bootstrap over test images (unstratified, percentile for schema 1-2). "
    f"{SMALL_CLASSES}: the smallest class has fewer than 20 test images: the interval rests on few images per "
    "class (simulated coverage 94% at 4 per class, where the older method covered 87%; 95% nominal).",
    f"- {OLDER_CONTROL}: control of results before schema 3: the shuffled-label control (training labels "
    "permuted, scored on the true test labels), at or below chance whatever the features; not a control task.",
    "- Only true replicates (equal run identity but for the seed) are averaged: runs of other configurations "
    "get their own row, labelled `model [field=value; ...]` with the fields that differ.",
    f"- {MISSING}: no finished run (see Incomplete runs); \"(k/n seeds)\": only k of the row's n seeds finished; "
    f"{UNDEFINED}: % change of a zero baseline.",
    "- **Baselines** (runs with `--baselines`): Random = exact expected macro-F1 of a uniform random guess; "
    "CLIP ZS = open_clip zero-shot; Probe CLIP emb. = the probe on CLIP's pooled image embedding (paper Table 3); "
    "\"X − CLIP ZS\" = the model's F1 in regime X minus CLIP zero-shot F1.",
]

UNVERIFIED_NOTE = (f"- {UNVERIFIED}: a number of this row does not follow from its runs' stored predictions (edited, "
                   "or its predictions are missing or fail their checksums): not a result. The Warnings name each "
                   "run and number; `python -m benchmark verify` checks every number of a run.")


def _verdict_md(board: Leaderboard) -> list[str]:
    """The answer first: per model and task, the verdict of each fine-tuned regime (:mod:`.verdict`)."""
    out = ["## Verdict", "", md_text(ABOUT), ""]
    for heading, rows in groups(board):
        out += [f"{md_text(heading)}:", ""] if heading else []
        for row in rows:
            out.append(f"- **{md_text(title(row))}**")
            out += [f"  - {md_text(v.text)}" for v in row_verdicts(row)]
        out.append("")
    return out


def markdown(board: Leaderboard, with_reference: bool = False, *, verdict: bool = True) -> str:
    """The Markdown leaderboard; ``verdict=False`` leaves out the leading verdict (``run`` prints it after)."""
    full = [r for r in board.rows if r.limit is None]
    limited = [r for r in board.rows if r.limit is not None]
    marked = [UNVERIFIED_NOTE] if any(r.unverified for r in board.rows) else []
    out = ["# projbench leaderboard", ""] + (_verdict_md(board) if verdict and board.rows else [])
    out += ["## How to read the tables", "", *LEGEND, *marked, ""]
    out += _runs_section_md("Full runs", "Every image of each task's splits.", full,
                            [s for s in board.summary if s.limit is None])
    if limited:
        out += _runs_section_md(
            "Limited runs (quick checks, not comparable with full runs)",
            "Run with `--max-per-class k`: at most k images per class and split. Never read these as results.",
            limited, [s for s in board.summary if s.limit is not None])
    out += ["## Incomplete runs", ""]
    out += [f"- {code_span(i.path)}: {md_text(i.reason)}" for i in board.incomplete] or ["None."]
    out += ["", "## Skipped files", ""]
    out += [f"- {code_span(s.path)}: {md_text(s.reason)}" for s in board.skipped] or ["None."]
    out += [""]
    if board.warnings:
        out += ["## Warnings", ""] + [f"- {md_text(w)}" for w in board.warnings] + [""]
    if with_reference:
        out += _reference_md()
    return "\n".join(out).rstrip("\n") + "\n"

