"""The probe's progress bar (benchmark.evaluate.ensemble.epoch_bar), read from what tqdm writes.

With early stopping a probe ends long before its epoch maximum, so its bar must count epochs and show the
stopping state, never a time remaining for epochs that will not run; with a fixed epoch budget every epoch runs
and tqdm's usual bar and estimate are right. tqdm itself draws the bar; only its minimum redraw interval is set to
0 so that every epoch's frame is written (the tiny probe's epochs are faster than tqdm's default 0.1 s).
"""

from __future__ import annotations

import re

import pytest
import torch
import tqdm.auto
import tqdm.std

from benchmark.config import ProbeConfig
from benchmark.evaluate.ensemble import fit_members

MAX_EPOCHS, PATIENCE = 40, 5


class EveryFrame(tqdm.std.tqdm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**kwargs, "mininterval": 0})


@pytest.fixture
def frames(monkeypatch, capsys):
    monkeypatch.setattr(tqdm.auto, "tqdm", EveryFrame)

    def read() -> list[str]:
        return [f.strip() for f in capsys.readouterr().err.split("\r") if f.strip()]

    return read


def _rows(seed: int, n: int, *, informative: bool):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() if informative else torch.randint(0, 2, (n,), generator=g)
    return x, y


def _fit(seeds: list[int], *, informative: bool, **kwargs):
    x, y = _rows(0, 80, informative=informative)
    cfg = ProbeConfig(hidden=(16,), lr=1e-2, max_epochs=MAX_EPOCHS, patience=PATIENCE)
    labels = torch.stack([y] * len(seeds))
    if "budget" in kwargs:
        return fit_members(x, labels, seeds=seeds, num_classes=2, cfg=cfg, progress=True, desc="probe", **kwargs)
    return fit_members(x[:60], labels[:, :60], seeds=seeds, num_classes=2, cfg=cfg,
                       validation=(x[60:], labels[:, 60:]), progress=True, desc="probe")


FRAME = re.compile(r"probe: epoch (\d+) \(at most 40\) \[[\d:]+, [^,\]]+(?:, (.*))?\]")
STATE = re.compile(r"best epoch (\d+), patience (\d+)/5")


@pytest.mark.parametrize("informative", [False, True], ids=["noise-labels", "separable"])
def test_early_stopping_bar_counts_epochs_and_shows_no_time_remaining(frames, informative):
    fit = _fit([3], informative=informative)
    shown = frames()
    assert fit.epochs_run[0] < MAX_EPOCHS, "the probe must stop early for this test to mean anything"
    parsed = [FRAME.fullmatch(f) for f in shown]
    assert all(parsed), f"a frame not in the early-stopping form: {[f for f, p in zip(shown, parsed, strict=True) if not p]}"
    assert not any("<" in f or "%" in f for f in shown), "an estimate or a fill of the epoch maximum is shown"
    epochs = [int(p[1]) for p in parsed]
    assert epochs == list(range(fit.epochs_run[0] + 1)), "each epoch is counted once, up to the one it stopped at"
    for p in parsed[1:-1]:  # after epoch e: best at epoch b (1-based), e - b epochs without a better score since
        best, bad = map(int, STATE.fullmatch(p[2]).groups())
        assert bad == int(p[1]) - best
    # the frame before the last: the kept state is the one the fit returns, with the patience one short of the end
    best, bad = map(int, STATE.fullmatch(parsed[-2][2]).groups())
    assert (best, bad) == (fit.best_epoch[0] + 1, PATIENCE - 1)
    assert parsed[-1][2] == "stopped"


def test_several_members_show_how_many_stopped(frames):
    fit = _fit([3, 4, 5], informative=False)
    shown = [FRAME.fullmatch(f) for f in frames()][1:]
    for p in shown:
        done = sum(e <= int(p[1]) for e in fit.epochs_run)
        assert p[2].endswith(f"stopped {done}/3"), p[0]


def test_fixed_budget_bar_fills_to_the_largest_budget_with_an_estimate(frames):
    _fit([3, 4], informative=True, budget=[3, 6])
    shown = frames()
    assert shown[-1].startswith("probe: 100%") and "6/6" in shown[-1] and shown[-1].endswith("done 2/2]")
    assert any(re.search(r"3/6 \[[\d:]+<[\d:]+, .*done 1/2\]$", f) for f in shown), shown
