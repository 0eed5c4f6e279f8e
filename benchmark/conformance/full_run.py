"""The whole protocol on the adapter: ``run`` on the textile task in every regime, read back by the leaderboard."""

from __future__ import annotations

from .models import registry
from .report import fail


def check_full_protocol(adapter, tmp_path) -> None:
    """`run` on the textile task, every regime, at a reduced size; the leaderboard shows the adapter's row."""
    from ..config import ProbeConfig, RunConfig
    from ..leaderboard.collect import collect
    from ..leaderboard.table import build
    from ..protocol import Runner

    cfg = RunConfig(model=adapter.name, task="textile", max_per_class=4, results_dir=str(tmp_path),
                    cache_dir=str(tmp_path / "cache"), probe=ProbeConfig(max_epochs=2), progress=False)
    results = Runner(cfg, log=lambda *_: None).run()
    regimes = [m["regime"] for m in results]
    if regimes != ["zero-shot", "ft-proj", "ft-e2e"]:
        fail("run", "the protocol did not produce every regime", ["zero-shot", "ft-proj", "ft-e2e"], regimes)
    tokens = [m["training"]["supervised_answer_tokens"] for m in results[1:]]
    if not all(n > 0 for n in tokens):
        fail("encode()", "training supervised no answer token", "> 0 per regime", tokens)
    [row] = build(collect(tmp_path)).rows
    family = registry().adapters.get(adapter.name).projector_family
    if (row.model, row.projector_families) != (adapter.name, (family,)):
        fail("AdapterSpec", "the leaderboard row does not show the adapter and its projector family",
             (adapter.name, (family,)), (row.model, row.projector_families))


__all__ = ["check_full_protocol"]
