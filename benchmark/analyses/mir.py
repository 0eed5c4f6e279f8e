"""``mir``: the Modality Integration Rate (Huang et al. 2024), per layer and overall, with a correct matrix root.

Huang et al. (arXiv 2410.07167, §3; their released ``mir.py``) compare, at every LLM layer, the hidden states of
the image tokens with those of the text tokens that follow the image. Here, per layer (hidden states 1..L; the
embeddings are left out, as in the reference code) the sampled image-token states and text states of the test
split (``tokens_per_image`` of each per image; the text states are the prompt tokens *after* the image, without
the tokenizer's special tokens, see :mod:`benchmark.analyses.hidden`) are

1. scaled text-centrically: both modalities are multiplied by 1 / (mean L2 norm of the text tokens);
2. cleaned of outliers: a token whose norm is more than 3 standard deviations of the norms away from the
   median norm is replaced by the per-dimension median of its modality;
3. compared with the Fréchet distance of Gaussian fits,
   ``|mu_V - mu_T|^2 + Tr(S_V) + Tr(S_T) - 2 Tr((S_V S_T)^(1/2))``.

``Tr((S_V S_T)^(1/2))`` is computed exactly in float64: with ``A = S_V^(1/2)`` (symmetric, from an eigen
decomposition), ``S_V S_T`` is similar to the symmetric PSD ``A S_T A``, so the trace is the sum of the square
roots of that matrix's eigenvalues. MIR is ``log10`` of the sum of the per-layer distances.

What differs from the reference: its text is a separate caption (CNN/DailyMail stories) placed after the image,
ours is the task's classification prompt after the image (the same images and prompts as the run); it keeps
every token, we keep ``tokens_per_image`` evenly spaced ones per image and modality. With fewer sampled tokens
than hidden dimensions the covariances are rank-deficient estimates: the result records the sample sizes
against the hidden size (``n_image_tokens``, ``n_text_tokens``, ``hidden_size``).

``mir_compat`` reproduces the reference code's default "fast" mode, whose five Newton-Schulz steps start at
``Y = S_V S_T, Z = I`` and never move (``Y <- (Y + Z^-1 M)/2 = M``, ``Z <- (Z + Y^-1 M)/2 = I``): it subtracts
``2 Tr(S_V S_T)`` instead of the root. That holds only while ``S_V S_T`` is invertible: with fewer sampled tokens
than dimensions (rank of a covariance <= tokens - 1 < d) the product is singular and the loop's inverse fails
or returns noise, so compat mode refuses such a layer (:func:`compat_problem`) instead of reporting a number the
reference would not give; an ill-conditioned product (its float32 inverse loses every digit) is reported in
``warnings``. Compat results match the published numbers' method, not the metric's definition.
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


def prepared(image: torch.Tensor, text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both modalities' token states scaled text-centrically and cleaned of outliers (float64)."""
    image, text = text_centric_scale(image, text)
    return replace_outliers(image), replace_outliers(text)


def layer_mir(image: torch.Tensor, text: torch.Tensor, compat: bool = False) -> float:
    """The per-layer distance of the MIR paper: text-centric scaling, outlier replacement, Fréchet distance."""
    return frechet_distance(*prepared(image, text), compat)


FLOAT32_EPS = float(torch.finfo(torch.float32).eps)


def compat_problem(x: torch.Tensor, y: torch.Tensor) -> tuple[str | None, str | None]:
    """(refusal, warning) of the reference's fast mode on token states ``x`` and ``y`` (rows; already scaled
    and cleaned): why its Newton-Schulz loop cannot give ``Tr(S_V S_T)`` (a singular product), and whether its
    float32 inverse is unreliable (condition number of the product beyond 1 / float32 epsilon)."""
    d = x.shape[1]
    conds = []
    for name, z in (("image", x), ("text", y)):
        if len(z) - 1 < d:
            return (f"{len(z)} {name} tokens for {d} dimensions: the covariance has rank <= {len(z) - 1} < {d}, "
                    "so S_V S_T is singular and the reference loop's matrix inverse fails"), None
        vals = torch.linalg.eigvalsh(covariance(z))
        if float(vals[0]) <= float(vals[-1]) * d * torch.finfo(torch.float64).eps:
            return (f"the {name} tokens' covariance is singular (smallest eigenvalue {float(vals[0]):.3g}, largest "
                    f"{float(vals[-1]):.3g}), so S_V S_T is singular and the reference loop's inverse fails"), None
        conds.append(float(vals[-1] / vals[0]))
    cond = conds[0] * conds[1]  # an upper bound of the product's condition number
    if cond > 1.0 / FLOAT32_EPS:
        return None, (f"S_V S_T is ill-conditioned (condition <= {cond:.3g}): the reference loop's float32 inverse "
                      "may not reproduce Tr(S_V S_T)")
    return None, None


def sample_sizes(test) -> dict:
    """The number of token states per modality against the hidden size (covariances need tokens > dimensions)."""
    n = len(test) * test.tokens_per_image
    return {"n_image_tokens": n, "n_text_tokens": n, "hidden_size": test.dim,
            "tokens_per_dimension": n / test.dim}


def run(ctx) -> dict:
    from tqdm.auto import tqdm

    from . import AnalysisUnsupported

    test = ctx.hidden("test")
    compat = ctx.options.mir_compat
    per_layer, warnings = [], []
    for layer in tqdm(range(1, test.num_layers), desc=f"mir ({ctx.regime})", disable=not ctx.progress):
        img, txt = prepared(test.image_tokens(layer).reshape(-1, test.dim),
                            test.text_tokens(layer).reshape(-1, test.dim))
        if compat:
            refusal, warning = compat_problem(img, txt)
            if refusal:
                raise AnalysisUnsupported(
                    f"--mir-compat at hidden state {layer}: {refusal}. The reference's fast mode is defined only "
                    "for more sampled tokens than dimensions: raise --tokens-per-image (at least "
                    f"{-(-(test.dim + 1) // len(test))} for {len(test)} test images), or drop --mir-compat "
                    "(the exact root is defined for any sample)")
            if warning:
                warnings.append(f"hidden state {layer}: {warning}")
        per_layer.append(frechet_distance(img, txt, compat))
    total = sum(per_layer)
    return {
        "x": list(range(1, test.num_layers)), "primary": "frechet", "x_label": "hidden state (block output)",
        "curves": {"frechet": per_layer},
        "summary": {"mir": math.log10(total) if total > 0 else None, "sum_frechet": total,
                    "mode": "compat (Tr(S_V S_T), reference fast mode)" if compat else "exact"},
        "text_states": "after the image, without special tokens", "warnings": warnings, **sample_sizes(test),
    }
