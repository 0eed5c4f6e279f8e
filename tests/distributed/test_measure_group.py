"""`plan --measure` launched as a group (torchrun, 2 CPU processes over gloo): the plan's row for the launched
engine is the one measured against, throughput is the group's, memory the largest process's, one answer."""

from __future__ import annotations

import json
import statistics

import pytest
from test_distributed import torchrun


@pytest.mark.multiprocess
@pytest.mark.parametrize("engine, row, trained_by", [("fsdp2", "fsdp", "fsdp2"), ("ddp", "ddp", "ddp")])
def test_a_launched_group_is_measured_against_the_plan_row_of_its_engine(engine, row, trained_by, tmp_path):
    out = tmp_path / "m.json"
    proc = torchrun(2, ["plan", "--model", "llava15-tiny", "--task", "textile", "--measure", "--engine", engine,
                        "--device", "cpu", "--steps", "2", "--warmup", "1", "--micro-batch", "1",
                        "--eval-images", "1", "--measure-out", str(out)])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("RANDOM-INIT weights") == 1  # rank 0 alone answers
    record = json.loads(out.read_text())
    assert (record["processes"], record["engine"], record["engine_requested"]) == (2, row, engine)
    assert "2 x CPU, 2 processes, engine " + row in proc.stdout
    plan = record["plan"]
    for regime, r in record["training"].items():
        assert r["trained_by"] == trained_by, regime
        # Sharded: each process holds about half the trained weights; DDP: all of them.
        assert r["trained_weights_held_by_rank0"] == pytest.approx(0.5 if row == "fsdp" else 1.0, abs=0.1)
        m = plan["regimes"][regime]["engines"][row]["memory_gb"]
        assert r["predicted_peak_gb"] == pytest.approx(
            m["weights"] + m["gradients"] + m["optimizer"] + m["gathered_weights"] + m["gathered_gradients"]
            + m["activations_per_sample"])
        single = plan["regimes"][regime]["engines"]["single"]["memory_gb"]
        if row == "fsdp":  # the plan shards the state over the 2 processes, and adds what FSDP gathers whole
            assert m["optimizer"] == pytest.approx(single["optimizer"] / 2) and m["gathered_weights"] > 0
        else:
            assert m["optimizer"] == pytest.approx(single["optimizer"]) and m["gathered_weights"] == 0
        # Two processes each train one micro-batch per step.
        assert r["samples_per_second"] == pytest.approx(2 * 1 / statistics.median(r["step_seconds"]))
        peaks = [p["rss_delta"] for p in r["peak_gb_per_process"]]
        assert len(peaks) == 2 and r["peak_gb"]["rss_delta"] == max(peaks)
