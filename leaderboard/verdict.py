"""The verdict: one line per fine-tuned regime that answers the benchmark's question from a row's numbers.

The question (Verma et al., ACL 2024, arXiv 2402.16832): when the model is fine-tuned on a domain, does the
projector's output gain the domain's visual information, or does the task improve while it loses some? The paper
found the second (task gain up, richness down: the LLM learns the domain). A line reads the two changes of one
regime through their 95% intervals: a direction is claimed only where the interval excludes 0 (the rule of the
tables' "(n.s.)" mark, :attr:`~.stats.Stat.includes_zero`: an interval touching 0 includes it), giving the four
quadrants, and says what cannot be concluded where an interval includes 0 or there is none.

A random-initialised tiny twin gets one more line: its numbers show that the protocol runs, not what the real
model does. The run (``python -m benchmark run``), the Markdown leaderboard and the HTML page print these same
lines. Torch-free and standard library only, like the rest of the leaderboard.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePath

from .columns import NOT_SIGNIFICANT, REGIME_LABELS, model_label, number, task_label
from .table import FINETUNED

UP, DOWN, INCLUDES_ZERO, NO_INTERVAL = "up", "down", "includes 0", "no interval"
TASK = {UP: "the task improved", DOWN: "the task got worse"}
RICHNESS = {UP: "the projector's output gained domain information",
            DOWN: "the projector's output lost domain information"}
# The four quadrants, where both intervals exclude 0.
QUADRANTS = {
    (UP, DOWN): f"{TASK[UP]} while {RICHNESS[DOWN]} (the paper's finding)",
    (UP, UP): f"{TASK[UP]} and {RICHNESS[UP]} (the projector learned the domain: not the paper's finding)",
    (DOWN, DOWN): f"{TASK[DOWN]} and {RICHNESS[DOWN]}",
    (DOWN, UP): f"{TASK[DOWN]} while {RICHNESS[UP]}",
}
WHY = {INCLUDES_ZERO: "interval includes 0", NO_INTERVAL: "no interval"}
BOTH = {INCLUDES_ZERO: "both intervals include 0", NO_INTERVAL: "neither has an interval"}
TWIN_FOLDER = "tiny"   # a twin's checkpoint is its folder <cache>/tiny/<name>-<build hash> (adapters/tiny.py)
TWIN = "random-initialised twin"
NO_RUN = "no verdict: no finished run paired with the zero-shot run of its seed"


def direction(change) -> str:
    """UP or DOWN where the 95% interval excludes 0, INCLUDES_ZERO where it includes 0 (touching counts),
    NO_INTERVAL without one. ``change``: anything with ``ci`` and ``includes_zero`` (a :class:`~.stats.Stat`)."""
    if change.ci is None:
        return NO_INTERVAL
    if change.includes_zero:
        return INCLUDES_ZERO
    return UP if change.ci[0] > 0 else DOWN


def change_text(name: str, change) -> str:
    """``task gain +0.2100 [+0.1500, +0.2700]``, with the tables' "(n.s.)" where the interval includes 0."""
    text = f"{name} {number(change.mean, 'delta')}"
    d = direction(change)
    if d == NO_INTERVAL:
        return text + " (no interval)"
    text += f" [{number(change.ci[0], 'delta')}, {number(change.ci[1], 'delta')}]"
    return text + (f" {NOT_SIGNIFICANT}" if d == INCLUDES_ZERO else "")


def reading(gain: str, richness: str) -> str:
    """What the two directions answer: a quadrant, or what can and cannot be concluded."""
    if (gain, richness) in QUADRANTS:
        return QUADRANTS[(gain, richness)]
    if gain in TASK:
        return f"{TASK[gain]}; no change in the projector's domain information can be concluded ({WHY[richness]})"
    if richness in RICHNESS:
        return f"no change in the task can be concluded ({WHY[gain]}); {RICHNESS[richness]}"
    why = BOTH[gain] if gain == richness else f"task gain: {WHY[gain]}; richness: {WHY[richness]}"
    return f"no change in the task or in the projector's domain information can be concluded ({why})"


@dataclass(frozen=True)
class Verdict:
    """One verdict line, in its parts: ``label: numbers: reading`` (a twin's caveat has no numbers)."""

    label: str       # the regime ("FT-Proj", "FT-E2E (LoRA)"), or "random-initialised twin"
    numbers: str     # the two changes with their intervals; "" where there is nothing to show
    reading: str     # what they answer

    @property
    def text(self) -> str:
        return ": ".join(p for p in (self.label, self.numbers, self.reading) if p)


def regime_verdict(label: str, gain, richness) -> Verdict:
    """The verdict of one fine-tuned regime: its two changes with their intervals, then what they answer."""
    if gain is None or richness is None:
        return Verdict(label, "", NO_RUN)
    return Verdict(label, f"{change_text('task gain', gain)}, {change_text('richness', richness)}",
                   reading(direction(gain), direction(richness)))


def regime_line(label: str, gain, richness) -> str:
    return regime_verdict(label, gain, richness).text


def is_twin(checkpoints: tuple[str, ...]) -> bool:
    """Whether the runs loaded a random-initialised tiny twin: every checkpoint a folder of the twin cache."""
    return bool(checkpoints) and all(PurePath(c).parent.name == TWIN_FOLDER for c in checkpoints)


def twin_verdict(model: str) -> Verdict:
    family = model.removesuffix("-tiny")
    return Verdict(TWIN, "", f"these numbers show the protocol runs, not what {family} does")


def title(row) -> str:
    """``model · task`` (with the row's configuration and the limit where there are), as the tables name it; ✗
    where the row's numbers do not follow from its runs' stored predictions (:mod:`.verified`)."""
    mark = " ✗ (numbers that do not follow from their stored predictions: not a result)" if row.unverified else ""
    return f"{model_label(row)} · {task_label(row.task, row.limit)}{mark}"


def row_verdicts(row) -> list[Verdict]:
    """The verdicts of a leaderboard row: FT-Proj, FT-E2E (or FT-E2E (LoRA)), and the twin's caveat."""
    out = [regime_verdict(REGIME_LABELS[row.folder(g)], row.gain.get(g), row.richness.get(g)) for g in FINETUNED]
    if is_twin(getattr(row, "checkpoints", ())):
        out.append(twin_verdict(row.model))
    return out


def row_lines(row) -> list[str]:
    """The verdict lines of a leaderboard row, as the run prints them."""
    return [v.text for v in row_verdicts(row)]


ABOUT = ("One line per fine-tuned regime: task gain and richness change with their 95% intervals, then what they "
         f"answer. A direction is read only where the interval excludes 0; {NOT_SIGNIFICANT}: it includes 0. The "
         "paper's finding: a task gain with a richness loss (the LLM, not the projector, learns the domain).")
RUN_HEAD = (f"Verdict (95% intervals; a direction is read only where the interval excludes 0, {NOT_SIGNIFICANT} "
            "where it includes 0):")
LIMITED = "Limited runs (--max-per-class: quick checks, not results)"


def groups(board) -> list[tuple[str, list]]:
    """The board's rows for the verdicts: full runs, then limited runs under their caveat (empty groups left out)."""
    full = [r for r in board.rows if r.limit is None]
    limited = [r for r in board.rows if r.limit is not None]
    return [(heading, rows) for heading, rows in (("", full), (LIMITED, limited)) if rows]


def run_verdict(board) -> str:
    """What ``python -m benchmark run`` prints after its table: per row, its title and its verdict lines."""
    out = [RUN_HEAD]
    for row in board.rows:
        out += ["", title(row)] + [f"  {line}" for line in row_lines(row)]
    return "\n".join(out)
