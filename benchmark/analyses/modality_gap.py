"""``modality-gap``: per layer, how far apart the image-token and text-token states are (Liang et al. 2022).

Each test image contributes one image vector (the mean of its image-token states) and one text vector (the mean
of its prompt's text-token states) per layer. Reported per layer:

* ``gap_raw``: the Euclidean distance between the two populations' means;
* ``gap_centred``: the same after removing the layer's joint mean and scaling every vector to unit length, which
  makes layers (whose norms differ by orders of magnitude) comparable, as Liang et al. measure it on the sphere;
* a permutation baseline: the raw gap after randomly reassigning the 2N vectors to the two groups
  (``permutations`` times, seeded): its mean and 95th percentile, and the permutation p-value of the observed gap.
"""

from __future__ import annotations

import torch


def mean_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Distance between the means of two populations of vectors (rows), in float64."""
    return float(torch.linalg.vector_norm(a.double().mean(0) - b.double().mean(0)))


def centred_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The gap after removing the joint mean and normalising every vector to unit length."""
    a, b = a.double(), b.double()
    centre = torch.cat([a, b]).mean(0)
    unit = [torch.nn.functional.normalize(x - centre, dim=1) for x in (a, b)]
    return mean_gap(*unit)


def permutation_gaps(a: torch.Tensor, b: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Raw gaps of ``n`` random regroupings of the pooled rows into groups of the original sizes."""
    both = torch.cat([a, b]).double()
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        perm = torch.randperm(len(both), generator=gen)
        out[i] = mean_gap(both[perm[: len(a)]], both[perm[len(a):]])
    return out


def run(ctx) -> dict:
    test = ctx.hidden("test")
    n_perm = ctx.options.permutations
    curves = {"gap_raw": [], "gap_centred": [], "perm_mean": [], "perm_p95": [], "p_value": []}
    for layer in range(test.num_layers):
        img, txt = test.image_mean(layer), test.text_mean(layer)
        gap = mean_gap(img, txt)
        curves["gap_raw"].append(gap)
        curves["gap_centred"].append(centred_gap(img, txt))
        perm = permutation_gaps(img, txt, n_perm, ctx.seed * 1_000 + layer) if n_perm else torch.zeros(0)
        curves["perm_mean"].append(float(perm.mean()) if n_perm else None)
        curves["perm_p95"].append(float(perm.quantile(0.95)) if n_perm else None)
        curves["p_value"].append(float(((perm >= gap).sum() + 1) / (n_perm + 1)) if n_perm else None)
    return {
        "x": list(range(test.num_layers)), "primary": "gap_centred", "x_label": "hidden state (0 = embeddings)", "curves": curves,
        "summary": {"gap_centred_first": curves["gap_centred"][0], "gap_centred_last": curves["gap_centred"][-1],
                    "min_gap_centred_layer": min(range(test.num_layers), key=lambda i: curves["gap_centred"][i])},
        "n_images": len(test), "permutations": n_perm,
    }
