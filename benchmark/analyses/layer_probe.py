"""``layer-probe``: the paper's richness probe on the image-token hidden states, mean-pooled, at every LLM layer.

For each hidden state (0 = embeddings, where the image tokens are exactly the projector's output, so layer 0
reproduces the post-projection probe; ``l`` = output of block ``l-1``) the paper's MLP probe
(:func:`benchmark.evaluate.probe.probe_with_control`: the A.2 architecture, the run's probe seeds, early stopping on
a held-out part of train) is trained on the train split and scored on the test split, with the same control task
as the run's probes (Hewitt & Liang 2019; :mod:`benchmark.evaluate.control`: a fixed random label per cluster of
that layer's features, scored on the test rows' control labels). ``selectivity = probe - control`` is what the
layer's features make learnable beyond what the probe can memorise. One curve per model state shows where
fine-tuning adds or removes domain information.
"""

from __future__ import annotations

from dataclasses import replace

from benchmark.evaluate.probe import probe_with_control

from ..config import ProbeConfig


def run(ctx) -> dict:
    from tqdm.auto import tqdm

    train, test = ctx.hidden("train"), ctx.hidden("test")
    cfg = replace(ProbeConfig(), max_epochs=ctx.options.probe_max_epochs)
    n_cls = len(ctx.classes)
    ytr, yte = train.labels, test.labels
    probe, control, per_layer = [], [], []
    for layer in tqdm(range(train.num_layers), desc=f"layer-probe ({ctx.regime})", disable=not ctx.progress):
        xtr, xte = train.image_mean(layer), test.image_mean(layer)
        p, _ = probe_with_control(xtr, ytr, uids_train=train.uids, x_test=xte, y_test=yte, num_classes=n_cls,
                                  seed=ctx.seed, cfg=cfg)
        probe.append(p["macro_f1"])
        control.append(p["control"]["macro_f1"])
        per_layer.append({"layer": layer, "probe": {k: v for k, v in p.items() if k != "control"},
                          "control": p["control"]})
    selectivity = [a - b for a, b in zip(probe, control, strict=True)]
    best = max(range(len(probe)), key=lambda i: probe[i])
    return {
        "x": list(range(train.num_layers)), "primary": "probe_macro_f1", "secondary": "control_macro_f1", "x_label": "hidden state (0 = embeddings)",
        "curves": {"probe_macro_f1": probe, "control_macro_f1": control, "selectivity": selectivity},
        "summary": {"best_layer": best, "best_macro_f1": probe[best], "embedding_macro_f1": probe[0],
                    "last_macro_f1": probe[-1], "mean_control_macro_f1": sum(control) / len(control)},
        "per_layer": per_layer, "probe_config": cfg.to_dict(), "n_train": len(ytr), "n_test": len(yte),
    }
