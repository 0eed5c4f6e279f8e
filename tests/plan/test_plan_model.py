"""The plan's memory model and micro-batch choice on their own (no model built): bytes per engine, sharding,
and the micro-batch fitted to the paper's global batch."""

from __future__ import annotations

import pytest

from benchmark.errors import BenchmarkError
from benchmark.plan import Gpus
from benchmark.plan.hardware import GB
from benchmark.plan.memory import Activations, Gathered, Memory, engines_on
from benchmark.plan.micro_batch import recommend
from benchmark.plan.timing import Clock

TWO = Gpus.parse("2xA100-80GB")


def test_sharded_engines_divide_the_training_state_and_ddp_replicates_it():
    act = Activations(full=1e9, checkpointed=1e8)
    rows = {e: Memory.model(e, TWO, total=10_000, trained=1_000, dtype_bytes=2, kv=0.0, activations=act)
            for e in engines_on(TWO)}
    # frozen weights bf16 (2 bytes), trained fp32 (4), gradients fp32 (4), Adam moments (8)
    assert rows["single"].weights == 9_000 * 2 + 1_000 * 4
    assert (rows["single"].gradients, rows["single"].optimizer) == (4_000, 8_000)
    assert rows["ddp"] == rows["single"]
    assert rows["fsdp"] == rows["zero3"]
    assert rows["fsdp"].state == pytest.approx(rows["single"].state / 2)
    assert engines_on(Gpus.parse("1xA100-80GB")) == ("single",)


def test_activations_add_the_loss_s_vocabulary_wide_tensors_whole_and_under_checkpointing():
    """Per (token, vocabulary entry): the logits in the model's dtype (bf16: 2) and three fp32 tensors of the loss
    (saved log-softmax, the NLL's gradient into it, the gradient of its input): 2 + 12 bytes."""
    act = Activations.model(1_000, layers=2, hidden=4, tokens=3, vocab=5, dtype_bytes=2)
    loss = 3 * 5 * (2 + 12)
    assert act.full == 1_000 + loss
    # Checkpointed: each layer's input (2 x 3 x 4 x 2 bytes), one layer's saved tensors (1000 / 2), and the loss.
    assert act.checkpointed == 2 * 3 * 4 * 2 + 500 + loss


def test_a_sharded_engine_adds_what_it_gathers_and_the_others_do_not():
    act, held = Activations(full=1e9, checkpointed=1e8), Gathered(weights=700.0, gradients=300.0)
    rows = {e: Memory.model(e, TWO, total=10_000, trained=1_000, dtype_bytes=2, kv=0.0, activations=act,
                            gathered=held) for e in engines_on(TWO)}
    plain = Memory.model("fsdp", TWO, total=10_000, trained=1_000, dtype_bytes=2, kv=0.0, activations=act)
    assert rows["fsdp"].state == plain.state + 1_000.0
    assert rows["single"].gathered == rows["ddp"].gathered == Gathered()
    one = Memory.model("fsdp", Gpus.parse("1xA100-80GB"), total=10_000, trained=1_000, dtype_bytes=2, kv=0.0,
                       activations=act, gathered=held)
    assert one.gathered == Gathered()  # one GPU: nothing is sharded, nothing gathered


def test_zero_shot_holds_no_gradients_and_lists_no_activations():
    mem = Memory.model("single", TWO, total=10, trained=0, dtype_bytes=2, kv=GB, activations=None)
    assert list(mem.to_gb()) == ["weights", "gradients", "optimizer", "gathered_weights", "gathered_gradients",
                                 "kv_cache_scoring"]
    assert mem.to_gb()["kv_cache_scoring"] == 1.0
    trained = Memory.model("single", TWO, total=10, trained=5, dtype_bytes=2, kv=0.0,
                           activations=Activations(1.0, 0.5))
    assert list(trained.to_gb()) == ["weights", "gradients", "optimizer", "gathered_weights", "gathered_gradients",
                                     "activations_per_sample", "activations_per_sample_checkpointed",
                                     "kv_cache_scoring"]


def test_the_micro_batch_is_the_largest_fitting_divisor_of_each_gpus_share():
    act = Activations(full=10.0, checkpointed=1.0)
    rec = recommend(1_000.0, act, regime="ft-e2e", n_gpus=2)  # 16 fit; each GPU's share of 32 is 16
    assert (rec.micro_batch, rec.gradient_checkpointing, rec.accumulation_steps, rec.global_batch) == (16, False, 1, 32)
    rec = recommend(1_000.0, act, regime="ft-e2e", n_gpus=3, wanted=8)  # share 10: 8 does not divide it, 5 does
    assert (rec.micro_batch, rec.accumulation_steps) == (5, 2)
    rec = recommend(5.0, act, regime="ft-proj", n_gpus=1)  # not one whole sample: checkpointing, 4 of them
    assert (rec.micro_batch, rec.gradient_checkpointing, rec.activations_at_micro_batch) == (4, True, 4.0)
    assert recommend(0.5, act, regime="ft-proj", n_gpus=1) is None
    assert recommend(-1.0, act, regime="ft-proj", n_gpus=1) is None


def test_hours_spread_the_flops_over_the_gpus_at_the_stated_mfu():
    clock = Clock(TWO, 0.5)
    seconds = clock.seconds(2 * 312e12 * 0.5 * 3600)  # an hour's work for both GPUs
    assert seconds == pytest.approx(3600)
    assert clock.hours_on(seconds, 1) == pytest.approx(2.0)
    with pytest.raises(BenchmarkError, match="--mfu"):
        Clock(TWO, 1.5)


def test_gpus_by_name_or_by_memory_with_a_peak():
    assert Gpus.parse("h200-141gb") == Gpus(1, "H200-141GB", 141, 989.0)
    assert Gpus.parse("2xMI300-192GB", 1300.0) == Gpus(2, "MI300-192GB", 192.0, 1300.0)
    with pytest.raises(BenchmarkError, match="unknown GPU"):
        Gpus.parse("2xMI300-192GB")


def test_saved_activations_leave_out_the_weights_autograd_keeps():
    """A frozen Linear(8, 16) -> ReLU -> Linear(16, 4) on a batch of 4 that needs input gradients keeps both
    weights (to pass gradients to their inputs) and the ReLU's output (4 x 16 fp32 = 256 bytes): only the latter
    is activation memory; the weights are counted as weights."""
    import torch

    from benchmark.plan.counting import saved_bytes

    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).requires_grad_(False)
    x = torch.randn(4, 8, requires_grad=True)
    weights = frozenset(id(p) for p in net.parameters())
    assert saved_bytes(lambda: net(x), weights) == 4 * 16 * 4
    assert saved_bytes(lambda: net(x)) == 4 * 16 * 4 + (16 * 8 + 4 * 16) * 4  # what plan counted before
