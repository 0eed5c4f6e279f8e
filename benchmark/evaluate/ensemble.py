"""Several probes trained as one: the paper's probe MLP (A.2) with a leading *member* axis on every weight.

Each member is exactly one probe: its own initial weights (``probe_mlp`` built under its seed), its own batch
order (a generator seeded with its seed), its own labels (the task's, or a control task's), its own early
stopping. The members share nothing but the input rows: the loss is the *sum* of the members' mean
cross-entropies, so each member's gradient is that of its own loss, and Adam's update is elementwise, so a member
trains as it would alone (tests/evaluate/test_probe.py checks this against separate one-member trainings). One batched
matrix product per layer (``torch.baddbmm``) replaces a Python loop over probes; on CPU it is at least as fast
as training them one after another and faster for several members.

Early stopping per member (the paper's criterion, on the validation rows): a member's best state (lowest
validation loss, or highest validation macro-F1) is kept, and it is done after ``patience`` epochs without a
better one; training stops when every member is done. With a fixed epoch budget per member instead (chosen by
cross-validation, :mod:`benchmark.evaluate.probe`), a member keeps its state after that many epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.config import ProbeConfig
from benchmark.evaluate.intervals import macro_f1_rows


def probe_mlp(in_dim: int, num_classes: int, hidden: tuple[int, ...]) -> nn.Sequential:
    """One probe: Linear-ReLU blocks of widths ``hidden``, then a linear layer to the classes (paper A.2)."""
    layers, width = [], in_dim
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class MemberMLP(nn.Module):
    """``len(seeds)`` probe MLPs as stacked weights; member r starts as ``probe_mlp`` under ``seeds[r]``."""

    def __init__(self, seeds: list[int], in_dim: int, num_classes: int, hidden: tuple[int, ...]):
        super().__init__()
        linears = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):  # the member's init; the caller's generator is left alone
                torch.manual_seed(seed)
                linears.append([m for m in probe_mlp(in_dim, num_classes, hidden) if isinstance(m, nn.Linear)])
        self.weights = nn.ParameterList(  # (members, out, in)
            [nn.Parameter(torch.stack([ls[i].weight.detach() for ls in linears])) for i in range(len(linears[0]))])
        self.biases = nn.ParameterList(   # (members, 1, out)
            [nn.Parameter(torch.stack([ls[i].bias.detach()[None] for ls in linears]))
             for i in range(len(linears[0]))])

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None) -> torch.Tensor:
        """(members, rows, in) -> (members, rows, classes); ``members``: compute only these (their indices)."""
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            if members is not None:
                w, b = w[members], b[members]
            x = torch.baddbmm(b, x, w.transpose(1, 2))
            x = torch.relu(x) if i < last else x
        return x

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> np.ndarray:
        """(members, rows) argmax predictions for rows ``x`` (rows, in) shared by every member."""
        self.eval()
        return self(x.expand(len(self.weights[0]), *x.shape)).argmax(-1).numpy()


@dataclass
class Fitted:
    """The trained members (each in its kept state) and, per member, how training went."""

    model: MemberMLP
    best_epoch: list[int]                 # 0-based epoch of the kept state
    epochs_run: list[int]                 # epochs the member trained for before it was done
    val_loss: list[float | None]          # at the kept state (None without validation rows)
    val_macro_f1: list[float | None]


def fit_members(x_train: torch.Tensor, y_train: torch.Tensor, *, seeds: list[int], num_classes: int,
                cfg: ProbeConfig, validation: tuple[torch.Tensor, torch.Tensor] | None = None,
                budget: list[int] | None = None, progress: bool = False, desc: str = "probe") -> Fitted:
    """Train one member per seed on rows ``x_train`` (n, d) with labels ``y_train`` (members, n).

    Exactly one of ``validation`` (x_val (v, d), y_val (members, v)): early stopping per member, or ``budget``:
    epochs per member.
    """
    if (validation is None) == (budget is None):
        raise ValueError("fit_members needs either validation rows or an epoch budget per member, not both")
    m, n = y_train.shape
    model = MemberMLP(seeds, x_train.shape[1], num_classes, cfg.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    track = _Tracker(model, m, cfg, budget)
    bar = epoch_bar(track.limit, early_stopping=validation is not None, desc=desc, progress=progress)
    for epoch in range(track.limit):
        model.train()
        order = torch.stack([torch.randperm(n, generator=g) for g in gens])   # each member's own batch order
        # Members that are done (their state kept) are left out of the computation: they no longer matter.
        active = None if not any(track.done) else torch.tensor([r for r in range(m) if not track.done[r]])
        rows, labels = (order, y_train) if active is None else (order[active], y_train[active])
        for idx in rows.split(cfg.batch_size, dim=1):
            logits = model(x_train[idx], active)                               # (members, batch, classes)
            per_row = nn.functional.cross_entropy(logits.flatten(0, 1), labels.gather(1, idx).flatten(),
                                                  reduction="none")
            loss = per_row.view(len(idx), -1).mean(1).sum()  # a sum: each member's gradient is its own loss's
            opt.zero_grad()
            loss.backward()
            opt.step()
        stop = track.after_epoch(epoch, validation, num_classes)
        bar.set_postfix_str(track.describe(), refresh=False)
        bar.update()
        if stop:
            break
    bar.close()
    model.load_state_dict(track.state)
    return Fitted(model, track.best_epoch, track.epochs_run, track.val_loss, track.val_f1)


# Early stopping ends a probe long before its epoch maximum (about 10 of 100 epochs on the demo), so a bar counting
# to the maximum would fill to 10% and promise minutes for epochs that never run: with early stopping the bar
# shows the epoch, the maximum as a bound, the time spent and the stopping state, never a time remaining.
EARLY_STOPPING_BAR = "{desc}: epoch {n_fmt} (at most {total_fmt}) [{elapsed}, {rate_fmt}{postfix}]"


def epoch_bar(limit: int, *, early_stopping: bool, desc: str, progress: bool):
    """The probe's progress bar over epochs: with ``early_stopping``, no ETA (see EARLY_STOPPING_BAR); with a fixed
    epoch budget (every epoch up to ``limit`` runs), tqdm's usual bar and time remaining."""
    from tqdm.auto import tqdm

    return tqdm(total=limit, desc=desc, unit="epoch", leave=False, disable=not progress,
                bar_format=EARLY_STOPPING_BAR if early_stopping else None)


class _Tracker:
    """Each member's kept state and stopping (by validation, or at its epoch budget)."""

    def __init__(self, model: MemberMLP, members: int, cfg: ProbeConfig, budget: list[int] | None):
        self.model, self.cfg, self.budget = model, cfg, budget
        self.limit = max(budget) if budget is not None else cfg.max_epochs
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.score: list[float | None] = [None] * members
        self.best_epoch, self.bad = [0] * members, [0] * members
        self.epochs_run = [self.limit] * members
        self.done = [False] * members
        self.val_loss: list[float | None] = [None] * members
        self.val_f1: list[float | None] = [None] * members

    def keep(self, r: int, epoch: int) -> None:
        for k, v in self.model.state_dict().items():
            self.state[k][r] = v[r].detach()
        self.best_epoch[r] = epoch

    def after_epoch(self, epoch: int, validation, num_classes: int) -> bool:
        """Update every member after ``epoch``; True when all are done."""
        if validation is None:
            for r, e in enumerate(self.budget):
                if not self.done[r] and epoch + 1 == e:
                    self.keep(r, epoch)
                    self.done[r], self.epochs_run[r] = True, e
            return all(self.done)
        losses, f1s = _validate(self.model, *validation, num_classes)
        for r in range(len(self.done)):
            if self.done[r]:
                continue
            score = -losses[r] if self.cfg.early_stopping == "loss" else f1s[r]
            if self.score[r] is None or score > self.score[r]:
                self.keep(r, epoch)
                self.score[r], self.bad[r] = score, 0
                self.val_loss[r], self.val_f1[r] = losses[r], f1s[r]
            else:
                self.bad[r] += 1
                if self.bad[r] >= self.cfg.patience:
                    self.done[r], self.epochs_run[r] = True, epoch + 1
        return all(self.done)

    def describe(self) -> str:
        """The stopping state for the progress bar: the latest best epoch (1-based) and the fewest epochs without a
        better score among the members still training (training ends no sooner than ``patience`` minus that), and
        how many members have stopped; with an epoch budget, how many members reached theirs."""
        m, active = len(self.done), [r for r, d in enumerate(self.done) if not d]
        if self.budget is not None:
            return f"done {m - len(active)}/{m}"
        stopped = f"stopped {m - len(active)}/{m}" if m > 1 else ""
        if not active:
            return stopped or "stopped"
        best = max(self.best_epoch[r] for r in active) + 1
        state = f"best epoch {best}, patience {min(self.bad[r] for r in active)}/{self.cfg.patience}"
        return f"{state}, {stopped}" if stopped else state


@torch.no_grad()
def _validate(model: MemberMLP, x_val: torch.Tensor, y_val: torch.Tensor, num_classes: int):
    """Per member: mean cross-entropy and macro-F1 on the validation rows (each against its own labels)."""
    model.eval()
    logits = model(x_val.expand(y_val.shape[0], *x_val.shape))
    ce = nn.functional.cross_entropy(logits.flatten(0, 1), y_val.flatten(), reduction="none").view(y_val.shape)
    f1 = macro_f1_rows(y_val.numpy(), logits.argmax(-1).numpy(), num_classes)
    return ce.mean(1).tolist(), [float(v) for v in f1]
