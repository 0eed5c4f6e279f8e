"""What every stage of one run folder reads: the resolved run, and the model state passed from stage to stage."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..schema import RunKey
from ..tasks.base import TaskData


@dataclass(frozen=True)
class RunSetting:
    """What every run folder of one command shares: the adapter's spec, the CLIP chosen for it, the feature cache,
    the model's revision (once loaded) and the timings so far (model and data loading, feature extraction)."""

    adapter_spec: Any
    clip: Any
    cache: Path
    plan: Any = None  # the RunPlan: the training layout of each fine-tuned regime, resolved once
    revision: dict | None = None
    timing: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ResolvedRun:
    """One (regime, seed) of a run, resolved: its configuration, task data, feature stores and folder.

    ``stores`` maps a split (``train``, ``test``) to its cached features (empty for the baselines, which use CLIP
    only). ``setting``: what every run folder of one command shares.
    """

    cfg: Any  # the run's RunConfig
    data: TaskData
    stores: Mapping[str, Any]
    key: RunKey
    regime: str
    results: Path
    dist: Any  # the ProcessContext
    log: Callable[..., None]
    setting: RunSetting

    @property
    def seed(self) -> int:
        return self.key.seed

    @property
    def folder(self) -> Path:
        return self.key.under(self.results)

    @property
    def identity(self) -> dict:
        return self.cfg.identity(self.regime, self.seed)

    def folder_of(self, regime: str) -> Path:
        """The folder of another regime of the same seed (e.g. the zero-shot run a fine-tuned one is paired with)."""
        return self.cfg.run_key(regime, self.seed).under(self.results)


@dataclass
class ModelState:
    """The model the stages use: the checkpoint's original weights, or trained ones (and the file they are in).

    Fine-tuning changes the weights in place, so the next run folder asks for ``original()``, which loads a fresh
    copy after a training.
    """

    load: Callable[[], Any]
    adapter: Any = None
    trained: bool = False
    weights_file: Path | None = None

    def original(self):
        if self.adapter is None or self.trained:
            self.adapter, self.trained, self.weights_file = self.load(), False, None
        return self.adapter

    def mark_trained(self, weights_file: Path | None = None) -> None:
        self.trained, self.weights_file = True, weights_file
