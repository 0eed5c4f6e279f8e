"""Mid-training state written by one engine resumes under another (one process, FSDP2 shards) to the result of a
run that was never interrupted; the optimizer layouts match torch's own conversion.

FSDP2 runs here on a one-process gloo group: its parameters are DTensors and the state goes through torch's
distributed-checkpoint gather/broadcast, the code a 2-process run uses (tests/distributed/test_distributed.py runs that one).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from benchmark import distributed
from benchmark.distributed.engines import FSDP2, AccelerateFSDP, Single
from benchmark.train import state as train_state
from benchmark.train.loop import cosine_with_warmup

STEPS, SAVED_AT = 4, 2


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.frozen = torch.nn.Linear(4, 8)
        self.layers = torch.nn.ModuleList([torch.nn.Linear(8, 8) for _ in range(2)])
        self.head = torch.nn.Linear(8, 3)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        h = self.frozen(x)
        for layer in self.layers:
            h = torch.tanh(layer(h))
        return self.head(h)


def build(engine: str = "plain"):
    """A fresh model, optimizer and schedule; ``engine`` "fsdp2" shards it, "fsdp2+ac" also wraps each layer for
    activation checkpointing first, as accelerate's FSDP config does (parameter names gain a wrapper prefix)."""
    torch.manual_seed(0)
    net = Net()
    if engine == "fsdp2+ac":
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        net.layers = torch.nn.ModuleList([checkpoint_wrapper(layer) for layer in net.layers])
    if engine != "plain":
        from torch.distributed.fsdp import fully_shard

        for layer in net.layers:
            fully_shard(layer)
        fully_shard(net)
    # Groups in another order than the model's parameters (as LoRA's own group is): index != model order.
    groups = [{"params": list(net.head.parameters()), "lr": 1e-2},
              {"params": list(net.layers.parameters()), "lr": 5e-3}]
    opt = torch.optim.AdamW(groups, weight_decay=0.1)
    return net, opt, cosine_with_warmup(opt, STEPS, 0.25)


def data():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(6, 4, generator=g), torch.randint(0, 3, (6,), generator=g)) for _ in range(STEPS)]


def train(net, opt, sched, batches, losses):
    for x, y in batches:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))


def engine(kind: str):
    """The engine that holds a model built by ``build(kind)``, in this one process."""
    ctx = distributed.current()
    return Single(ctx) if kind == "plain" else FSDP2(ctx)


def whole(net) -> dict[str, torch.Tensor]:
    return {k.replace("_checkpoint_wrapped_module.", ""): (v.full_tensor() if hasattr(v, "full_tensor") else v)
            .detach().clone() for k, v in net.named_parameters()}


@pytest.fixture(scope="module")
def one_process_group(tmp_path_factory):
    """A gloo group of one process, so that fully_shard makes real DTensor shards in this process."""
    if torch.distributed.is_initialized():
        pytest.skip("a process group already exists in this process")
    store = tmp_path_factory.mktemp("pg") / "store"
    torch.distributed.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield
    torch.distributed.destroy_process_group()


@pytest.fixture(scope="module")
def uninterrupted():
    net, opt, sched = build()
    losses = []
    train(net, opt, sched, data(), losses)
    return whole(net), losses, sched.get_last_lr()


@pytest.mark.parametrize(("writer", "reader"), [("plain", "fsdp2"), ("fsdp2", "plain"), ("fsdp2", "fsdp2"),
                                                ("fsdp2+ac", "plain"), ("plain", "fsdp2+ac")],
                         ids=lambda e: e.replace("plain", "one-process"))
def test_a_state_resumes_under_another_engine_to_the_uninterrupted_result(tmp_path, one_process_group,
                                                                         uninterrupted, writer, reader):
    want, want_losses, want_lr = uninterrupted
    path = tmp_path / "train_state.json"
    net, opt, sched = build(writer)
    assert distributed.is_sharded(net) == (writer != "plain")
    losses = []
    train(net, opt, sched, data()[:SAVED_AT], losses)
    train_state.save(path, engine(writer).state_out(net, opt), scheduler=sched, losses=losses, supervised=48,
                     step=SAVED_AT)
    _, tensors = train_state.read(path)
    # Whole tensors, keyed as one process names them, whichever engine wrote them.
    assert {k: tuple(v.shape) for k, v in tensors.items() if k.startswith("param.")} == {
        f"param.{k}": tuple(v.shape) for k, v in want.items() if not k.startswith("frozen.")}

    net, opt, sched = build(reader)  # a fresh process: initial weights, empty optimizer
    got = train_state.load(path, engine(reader), model=net, optimizer=opt, scheduler=sched)
    assert (got["step"], got["supervised"], got["losses"]) == (SAVED_AT, 48, losses)
    train(net, opt, sched, data()[SAVED_AT:], got["losses"])
    assert got["losses"] == pytest.approx(want_losses, rel=1e-6)
    assert sched.get_last_lr() == pytest.approx(want_lr)
    final = whole(net)
    for k, v in want.items():
        torch.testing.assert_close(final[k], v, rtol=1e-6, atol=1e-7, msg=k)


def test_a_state_for_other_parameters_is_refused(tmp_path, one_process_group):
    path = tmp_path / "train_state.json"
    net, opt, sched = build("fsdp2")
    train(net, opt, sched, data()[:1], [])
    train_state.save(path, engine("fsdp2").state_out(net, opt), scheduler=sched, losses=[1.0], supervised=6, step=1)
    other, opt2, sched2 = build("fsdp2")
    other.head.requires_grad_(False)  # another regime: other trained weights
    with pytest.raises(train_state.CorruptFileError, match="trained weights do not match this model"):
        train_state.load(path, engine("fsdp2"), model=other, optimizer=opt2, scheduler=sched2)


def test_optimizer_layouts_convert_as_torch_converts_them():
    """By-name <-> by-index against torch's own distributed-checkpoint conversion of a plain optimizer."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    net, opt, sched = build()
    train(net, opt, sched, data()[:1], [])
    names = distributed.optimizer_param_names(net, opt)
    assert names == ["head.weight", "head.bias", "layers.0.weight", "layers.0.bias", "layers.1.weight",
                     "layers.1.bias"]
    by_name, by_index = get_optimizer_state_dict(net, opt), opt.state_dict()
    assert train_state.optimizer_state_by_index(by_name, names)["param_groups"] == by_index["param_groups"]
    assert train_state.optimizer_state_by_name(by_index, names)["param_groups"] == by_name["param_groups"]
    for i, n in enumerate(names):
        converted = train_state.optimizer_state_by_name(by_index, names)["state"][n]
        assert converted.keys() == by_name["state"][n].keys()
        for key in converted:
            assert torch.equal(converted[key], by_name["state"][n][key]), (n, key)
        back = train_state.optimizer_state_by_index(by_name, names)["state"][i]
        assert all(torch.equal(back[key], by_index["state"][i][key]) for key in back)


def test_shards_that_cannot_be_saved_whole_are_refused(one_process_group):
    """accelerate's FSDP1 (flat shards, not DTensors) cannot be resumed: said before training, with the fix."""
    fsdp = SimpleNamespace(state=SimpleNamespace(distributed_type=SimpleNamespace(value="FSDP")))
    accelerate_fsdp = AccelerateFSDP(distributed.Context(rank=0, world_size=2, accelerator=fsdp))
    assert "set `fsdp_version: 2`" in accelerate_fsdp.resumable_problem(build()[0])
    assert accelerate_fsdp.resumable_problem(build("fsdp2")[0]) is None
    assert Single(distributed.Context()).resumable_problem(build()[0]) is None


def test_a_state_of_an_earlier_version_still_resumes(tmp_path, uninterrupted):
    """Files written before the JSON named each optimizer index's parameter (one process's layout, no
    ``optimizer_params``) resume to the uninterrupted result: the indices are read in the optimizer's own order."""
    from benchmark.storage.integrity import read_sealed_json, seal
    from benchmark.storage.results import atomic_write_json

    want, want_losses, _ = uninterrupted
    path = tmp_path / "train_state.json"
    net, opt, sched = build()
    losses = []
    train(net, opt, sched, data()[:SAVED_AT], losses)
    train_state.save(path, engine("plain").state_out(net, opt), scheduler=sched, losses=losses, supervised=48,
                     step=SAVED_AT)
    record = read_sealed_json(path)
    del record["optimizer_params"]
    atomic_write_json(path, seal(record))

    net, opt, sched = build()
    got = train_state.load(path, engine("plain"), model=net, optimizer=opt, scheduler=sched)
    train(net, opt, sched, data()[SAVED_AT:], got["losses"])
    assert got["losses"] == pytest.approx(want_losses, rel=1e-6)
    final = whole(net)
    for k, v in want.items():
        torch.testing.assert_close(final[k], v, rtol=1e-6, atol=1e-7, msg=k)
