"""``layer-probe``: the paper's richness probe on the image-token hidden states, mean-pooled, at every LLM layer.

For each hidden state (0 = embeddings, where the image tokens are exactly the projector's output, so layer 0
reproduces the post-projection probe; ``l`` = output of block ``l-1``) the paper's MLP probe
(:func:`benchmark.evaluate.probe.train_probe`, A.2 architecture, early stopping on a held-out part of train) is trained
on the train split and scored on the test split. A control probe (Hewitt & Liang 2019) trains the same MLP on
labels shuffled with a seeded permutation of the training labels: its score is what the probe reaches without
the image-label relation, and ``selectivity = probe - control`` is the information that is really there.
One curve per model state shows where fine-tuning adds or removes domain information.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from benchmark.evaluate.probe import train_probe

from ..config import ProbeConfig


def shuffled_labels(labels: list[int], seed: int) -> list[int]:
    """The training labels under a seeded permutation (class counts kept, image-label relation destroyed)."""
    perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(10_007 + seed))
    return [labels[i] for i in perm.tolist()]


def run(ctx) -> dict:
    from tqdm.auto import tqdm

    train, test = ctx.hidden("train"), ctx.hidden("test")
    cfg = replace(ProbeConfig(), max_epochs=ctx.options.probe_max_epochs)
    n_cls = len(ctx.classes)
    ytr, yte = train.labels, test.labels
    control_labels = shuffled_labels(ytr, ctx.seed)
    probe, control, per_layer = [], [], []
    for layer in tqdm(range(train.num_layers), desc=f"layer-probe ({ctx.regime})", disable=not ctx.progress):
        xtr, xte = train.image_mean(layer), test.image_mean(layer)
        p = train_probe(xtr, ytr, uids_train=train.uids, x_test=xte, y_test=yte, num_classes=n_cls,
                        seed=ctx.seed, cfg=cfg)
        c = train_probe(xtr, control_labels, uids_train=train.uids, x_test=xte, y_test=yte, num_classes=n_cls,
                        seed=ctx.seed, cfg=cfg)
        probe.append(p["macro_f1"])
        control.append(c["macro_f1"])
        per_layer.append({"layer": layer, "probe": p, "control": c})
    selectivity = [a - b for a, b in zip(probe, control, strict=True)]
    best = max(range(len(probe)), key=lambda i: probe[i])
    return {
        "x": list(range(train.num_layers)), "primary": "probe_macro_f1", "secondary": "control_macro_f1", "x_label": "hidden state (0 = embeddings)",
        "curves": {"probe_macro_f1": probe, "control_macro_f1": control, "selectivity": selectivity},
        "summary": {"best_layer": best, "best_macro_f1": probe[best], "embedding_macro_f1": probe[0],
                    "last_macro_f1": probe[-1], "mean_control_macro_f1": sum(control) / len(control)},
        "per_layer": per_layer, "probe_config": cfg.to_dict(), "n_train": len(ytr), "n_test": len(yte),
    }
