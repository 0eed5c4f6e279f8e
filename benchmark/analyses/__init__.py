"""Layer-wise analyses: where in the LLM does a domain's visual information live, per model state?

Each analysis is one module registering an :class:`AnalysisSpec` through the ``register_analyses`` hook (the
built-ins through the very same hook as plugins). An analysis receives an :class:`AnalysisContext`: the adapter
in one model state (original, FT-Proj or FT-E2E), the task data, the shared cached hidden states
(:mod:`benchmark.analyses.hidden`) and the options, and returns a JSON-able dict with per-layer curves.
They use only the adapter contract; each declares the protocols it needs (``requires``, names of
:mod:`benchmark.adapters.contract`), and a model that lacks one is refused before the analysis runs, with the
reason (:class:`AnalysisUnsupported`). The built-in specs are data (:mod:`benchmark.analyses.catalog`): their
code is imported when they run, so listing them imports no torch.

Result dicts share one shape, read by the leaderboard's analysis tables and curves:
``{"x": [...], "x_label": "layer", "curves": {name: [value per x]}, "summary": {name: value}, ...details}``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..adapters.contract import PROTOCOLS, missing, unknown_protocols
from ..errors import BenchmarkError
from ..refs import Ref


class AnalysisUnsupported(BenchmarkError):
    """The analysis cannot apply to this model (the message says why)."""


@dataclass(frozen=True)
class AnalysisOptions:
    """Settings of the analyses; those an analysis reads are part of its result's identity."""

    probe_max_epochs: int = 100          # layer-probe (the paper's probe otherwise: benchmark.config.ProbeConfig)
    tokens_per_image: int = 8            # token states kept per image, layer and modality (MIR, logit lens)
    mir_compat: bool = False             # MIR: the reference code's fast mode, Tr(S_V S_T) (a known defect)
    knockout_window: int = 0             # layers blocked at once; 0 = auto: max(1, num_layers // 8)
    knockout_max_images: int = 64        # test images used by knockout (each costs ~2 x layers forwards)
    permutations: int = 200              # modality-gap permutation baseline
    top_tokens: int = 5                  # logit lens: most frequent top-1 tokens reported per layer
    batch_size: int = 8


@dataclass(frozen=True)
class AnalysisSpec:
    """A registry entry: one analysis, with the paper it comes from."""

    name: str
    run: Callable[[Any], dict]           # run(ctx: AnalysisContext) -> result dict; or a "module:function" reference
    citation: str
    description: str
    options: tuple[str, ...] = ()        # AnalysisOptions fields the result depends on
    on_original_model: bool = False      # runs on the original weights and reads the state's files (weight-change)
    variant: Callable[[AnalysisOptions], str] | None = None  # a folder suffix for options that change the method
    # The adapter protocols the analysis uses (names of benchmark.adapters.contract.PROTOCOLS): checked when it
    # is registered (known names) and before it runs (the adapter provides them), and shown by `list analyses`.
    requires: tuple[str, ...] = ()
    origin: str = "builtin"              # filled in by the registry
    # The definition's version, part of every result's identity: raised when the method changes what it
    # computes, so that a result of the older definition is never reused (nor silently overwritten).
    version: int = 1

    def __post_init__(self):
        if isinstance(self.run, str):
            object.__setattr__(self, "run", Ref(self.run))
        unknown = unknown_protocols(self.requires)
        if unknown:
            raise BenchmarkError(f"analysis {self.name!r} requires unknown protocol(s) {unknown}; the adapter "
                                 f"contract's protocols are {sorted(PROTOCOLS)}.")

    def unsupported(self, adapter) -> str | None:
        """Why ``adapter`` cannot run this analysis (the protocols it lacks), or None."""
        gaps = missing(adapter, self.requires)
        if not gaps:
            return None
        what = "; ".join(f"{name} ({', '.join(members)})" for name, members in gaps.items())
        return f"{type(adapter).__name__} does not provide {what}, which {self.name} requires"

    def execute(self, ctx: AnalysisContext) -> dict:
        """``run(ctx)`` after checking that the adapter provides what the analysis requires."""
        problem = self.unsupported(ctx.adapter)
        if problem:
            raise AnalysisUnsupported(problem)
        return self.run(ctx)


@dataclass(frozen=True)
class AnalysisContext:
    """What one analysis of one model state gets."""

    adapter: Any                         # benchmark.adapters.ModelAdapter, in the state below
    regime: str                          # "zero-shot" (original), "ft-proj", "ft-e2e"
    seed: int
    data: Any                            # benchmark.tasks.base.TaskData
    stores: dict                         # split -> cached vision features (benchmark.storage.features.FeatureStore)
    hidden: Callable[[str], Any]         # split -> HiddenStore (extracted once per state, cached on disk)
    options: AnalysisOptions
    state_files: dict = field(default_factory=dict)  # "projector" / "checkpoint" -> Path of the trained state
    progress: bool = True

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    @property
    def domain(self) -> str:
        return self.data.spec.domain


def folder_name(spec: AnalysisSpec, options: AnalysisOptions) -> str:
    """The result folder of an analysis: its name, plus its variant (e.g. ``mir-compat``)."""
    suffix = spec.variant(options) if spec.variant else ""
    return f"{spec.name}-{suffix}" if suffix else spec.name


__all__ = ["AnalysisContext", "AnalysisOptions", "AnalysisSpec", "AnalysisUnsupported", "folder_name"]
