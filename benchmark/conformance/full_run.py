"""The whole protocol on the adapter: ``run`` on the textile task in every regime, its records read back through
the result schema (what the leaderboard reads)."""

from __future__ import annotations

from .models import registry
from .report import blames_adapter, fail


@blames_adapter
def check_full_protocol(adapter, tmp_path) -> None:
    """`run` on the textile task, every regime, at a reduced size; its records name the adapter and its projector
    family, in the folders the schema gives them (what the leaderboard reads)."""
    from ..config import ProbeConfig, RunConfig
    from ..protocol import Runner
    from ..schema import RunKey, RunRecord

    cfg = RunConfig(model=adapter.name, task="textile", max_per_class=4, results_dir=str(tmp_path),
                    cache_dir=str(tmp_path / "cache"), probe=ProbeConfig(max_epochs=2), progress=False)
    results = Runner(cfg, log=lambda *_: None).run()
    regimes = [m["regime"] for m in results]
    if regimes != ["zero-shot", "ft-proj", "ft-e2e"]:
        fail("run", "the protocol did not produce every regime", ["zero-shot", "ft-proj", "ft-e2e"], regimes)
    tokens = [m["training"]["supervised_answer_tokens"] for m in results[1:]]
    if not all(n > 0 for n in tokens):
        fail("encode()", "training supervised no answer token", "> 0 per regime", tokens)
    family = registry().adapters.get(adapter.name).projector_family
    records = [RunRecord.from_json(m) for m in results]
    want = [RunKey(adapter.name, "textile", 4, r, 0) for r in regimes]
    if [r.key for r in records] != want or {r.projector_family for r in records} != {family}:
        fail("AdapterSpec", "the records do not name the adapter, its folders and its projector family",
             [(k.path, family) for k in want], [(r.key.path, r.projector_family) for r in records])


__all__ = ["check_full_protocol"]
