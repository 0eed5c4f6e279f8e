"""``mir``: the Modality Integration Rate (Huang et al. 2024), per layer and overall, with a correct matrix root.

Per LLM layer (hidden states 1..L; the embeddings are left out, as in the reference code) the sampled image-token
states and text-token states of the test split (``tokens_per_image`` of each per image) are

1. scaled text-centrically: both modalities are multiplied by 1 / (mean L2 norm of the text tokens);
2. cleaned of outliers: a token whose norm is more than 3 standard deviations of the norms away from the
   median norm is replaced by the per-dimension median of its modality;
3. compared with the Fréchet distance of Gaussian fits,
   ``|mu_V - mu_T|^2 + Tr(S_V) + Tr(S_T) - 2 Tr((S_V S_T)^(1/2))``.

``Tr((S_V S_T)^(1/2))`` is computed exactly in float64: with ``A = S_V^(1/2)`` (symmetric, from an eigen
decomposition), ``S_V S_T`` is similar to the symmetric PSD ``A S_T A``, so the trace is the sum of the square
roots of that matrix's eigenvalues. MIR is ``log10`` of the sum of the per-layer distances.

``mir_compat`` reproduces the reference code's default "fast" mode, whose five Newton-Schulz steps start at
``Y = S_V S_T, Z = I`` and never move (``Y <- (Y + Z^-1 Y)/2``): it subtracts ``2 Tr(S_V S_T)`` instead of the
root. Results then match the published numbers' method, not the metric's definition.
"""

from __future__ import annotations

import math

import torch


def text_centric_scale(image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    scale = 1.0 / text.double().norm(dim=-1).mean()
    return image.double() * scale, text.double() * scale


def replace_outliers(x: torch.Tensor, sigmas: float = 3.0) -> torch.Tensor:
    """Rows whose norm is more than ``sigmas`` std of the norms from the median norm -> per-dimension median."""
    norms = x.norm(dim=-1)
    far = (norms - norms.median()).abs() > sigmas * norms.std()
    out = x.clone()
    out[far] = x.median(dim=0).values
    return out


def sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a symmetric positive semi-definite matrix (float64, eigenvalues clipped at 0)."""
    vals, vecs = torch.linalg.eigh(m.double())
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(s1: torch.Tensor, s2: torch.Tensor) -> float:
    """Tr((s1 s2)^(1/2)) for covariance matrices: sum of sqrt(eig(s1^(1/2) s2 s1^(1/2)))."""
    a = sqrt_psd(s1)
    m = a @ s2.double() @ a
    vals = torch.linalg.eigvalsh((m + m.T) / 2)
    return float(vals.clamp_min(0).sqrt().sum())


def covariance(x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    c = x - x.mean(0)
    return c.T @ c / (len(x) - 1)


def frechet_distance(x: torch.Tensor, y: torch.Tensor, compat: bool = False) -> float:
    """Fréchet distance between Gaussian fits of the rows of ``x`` and ``y``; ``compat``: the reference's fast mode."""
    if len(x) < 2 or len(y) < 2:
        raise ValueError("the Fréchet distance needs at least 2 vectors per population")
    sx, sy = covariance(x), covariance(y)
    cross = float(torch.trace(sx @ sy)) if compat else trace_sqrt_product(sx, sy)
    diff = x.double().mean(0) - y.double().mean(0)
    return float(diff @ diff) + float(torch.trace(sx)) + float(torch.trace(sy)) - 2.0 * cross


def layer_mir(image: torch.Tensor, text: torch.Tensor, compat: bool = False) -> float:
    """The per-layer distance of the MIR paper: text-centric scaling, outlier replacement, Fréchet distance."""
    image, text = text_centric_scale(image, text)
    return frechet_distance(replace_outliers(image), replace_outliers(text), compat)


def run(ctx) -> dict:
    from tqdm.auto import tqdm

    test = ctx.hidden("test")
    compat = ctx.options.mir_compat
    per_layer = []
    for layer in tqdm(range(1, test.num_layers), desc=f"mir ({ctx.regime})", disable=not ctx.progress):
        img = test.image_tokens(layer).reshape(-1, test.dim)
        txt = test.text_tokens(layer).reshape(-1, test.dim)
        per_layer.append(layer_mir(img, txt, compat))
    total = sum(per_layer)
    return {
        "x": list(range(1, test.num_layers)), "primary": "frechet", "x_label": "hidden state (block output)",
        "curves": {"frechet": per_layer},
        "summary": {"mir": math.log10(total) if total > 0 else None, "sum_frechet": total,
                    "mode": "compat (Tr(S_V S_T), reference fast mode)" if compat else "exact"},
        "n_image_tokens": len(test) * test.tokens_per_image, "n_text_tokens": len(test) * test.tokens_per_image,
    }
