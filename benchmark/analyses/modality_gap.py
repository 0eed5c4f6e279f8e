"""``modality-gap``: per layer, how far apart the image and text states are (Liang et al. 2022, "Mind the Gap").

Liang et al. (NeurIPS 2022, §3 and their released code) define the gap between two modalities' embeddings as the
distance between the centres of the two L2-normalised populations,

    ``gap = || mean_i x_i / |x_i|  -  mean_j y_j / |y_j| ||``,

with no centring: a shared offset of both clouds away from the origin is part of the phenomenon they describe
(embeddings in a narrow cone), so it is kept. Here each test image contributes one image vector (the mean of
its image-token states) and one text vector (the mean of its prompt's text states: the tokens after the image,
without special tokens, see :mod:`benchmark.analyses.hidden`) per LLM layer. Reported per layer:

* ``gap``: Liang et al.'s gap above (the primary curve);
* ``gap_centred``: the same after removing the layer's joint mean of both populations first (each vector minus
  the mean of all 2N, then unit length). Not Liang et al.'s: it discards the shared offset and measures only
  how separable the two populations are around their common centre, so with a large shared offset it is much
  larger than ``gap`` (it was this module's only normalised gap before version 2);
* ``gap_raw``: the distance between the two populations' means, unnormalised;
* a permutation baseline of ``gap``: the gap after randomly reassigning the 2N normalised vectors to the two
  groups (``permutations`` times, seeded): its mean and 95th percentile, and the permutation p-value.

The result records the number of vectors per modality against the hidden size (``n_images``, ``hidden_size``).
"""

from __future__ import annotations

import torch


def mean_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Distance between the means of two populations of vectors (rows), in float64."""
    return float(torch.linalg.vector_norm(a.double().mean(0) - b.double().mean(0)))


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Every row scaled to unit L2 norm (float64); a zero row stays zero."""
    return torch.nn.functional.normalize(x.double(), dim=1)


def liang_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """Liang et al.'s modality gap: the distance between the means of the L2-normalised rows (no centring)."""
    return mean_gap(unit_rows(a), unit_rows(b))


def centred_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    """The gap after removing the joint mean of both populations and normalising every vector to unit length."""
    a, b = a.double(), b.double()
    centre = torch.cat([a, b]).mean(0)
    return mean_gap(unit_rows(a - centre), unit_rows(b - centre))


def permutation_gaps(a: torch.Tensor, b: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Mean gaps of ``n`` random regroupings of the pooled rows into groups of the original sizes."""
    both = torch.cat([a, b]).double()
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty(n, dtype=torch.float64)
    for i in range(n):
        perm = torch.randperm(len(both), generator=gen)
        out[i] = mean_gap(both[perm[: len(a)]], both[perm[len(a):]])
    return out


def layer_gaps(img: torch.Tensor, txt: torch.Tensor, *, permutations: int, seed: int) -> dict:
    """Every per-layer number of the analysis for one layer's image and text vectors."""
    gap = liang_gap(img, txt)
    # Regrouping the normalised vectors: the gap of each regrouping is Liang et al.'s gap of that regrouping.
    perm = permutation_gaps(unit_rows(img), unit_rows(txt), permutations, seed) if permutations else None
    return {
        "gap": gap, "gap_centred": centred_gap(img, txt), "gap_raw": mean_gap(img, txt),
        "perm_mean": float(perm.mean()) if perm is not None else None,
        "perm_p95": float(perm.quantile(0.95)) if perm is not None else None,
        "p_value": float(((perm >= gap).sum() + 1) / (permutations + 1)) if perm is not None else None,
    }


def run(ctx) -> dict:
    test = ctx.hidden("test")
    n_perm = ctx.options.permutations
    curves = {k: [] for k in ("gap", "gap_centred", "gap_raw", "perm_mean", "perm_p95", "p_value")}
    for layer in range(test.num_layers):
        row = layer_gaps(test.image_mean(layer), test.text_mean(layer), permutations=n_perm,
                         seed=ctx.seed * 1_000 + layer)
        for k, v in row.items():
            curves[k].append(v)
    layers = range(test.num_layers)
    return {
        "x": list(layers), "primary": "gap", "x_label": "hidden state (0 = embeddings)", "curves": curves,
        "summary": {"gap_first": curves["gap"][0], "gap_last": curves["gap"][-1],
                    "min_gap_layer": min(layers, key=lambda i: curves["gap"][i]),
                    "gap_centred_last": curves["gap_centred"][-1]},
        "definition": "Liang et al. 2022: distance between the means of the L2-normalised image and text vectors, "
                      "uncentred; gap_centred removes the joint mean first",
        "text_states": "after the image, without special tokens",
        "n_images": len(test), "hidden_size": test.dim, "permutations": n_perm,
    }
