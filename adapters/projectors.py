"""Projector modules of composed models, as a registry: a name -> how to build it and which family it is.

``adapters/compose.py`` builds the projector a spec names (``"projector": "mlp2x_gelu"`` or
``{"type": "qformer", "num_queries": 8, ...}``). A new kind is one :func:`register_projector` call.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.errors import ModelLoadError


class QueryBlock(nn.Module):
    """One Q-Former-style block: queries attend to themselves, then to the image features, then an MLP."""

    def __init__(self, width: int, heads: int, kv_width: int):
        super().__init__()
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.self_attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, heads, kdim=kv_width, vdim=kv_width, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, q, feats):
        h = self.norm1(q)
        q = q + self.self_attn(h, h, h, need_weights=False)[0]
        q = q + self.cross_attn(self.norm2(q), feats, feats, need_weights=False)[0]
        return q + self.mlp(self.norm3(q))


class QueryTransformer(nn.Module):
    """Learned queries read the image through cross-attention (BLIP-2's Q-Former idea), then a linear map to the LM."""

    def __init__(self, in_dim: int, out_dim: int, *, num_queries: int = 32, depth: int = 2, heads: int = 8,
                 width: int = 768):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, num_queries, width) * 0.02)
        self.blocks = nn.ModuleList(QueryBlock(width, heads, in_dim) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, feats):
        q = self.queries.expand(feats.shape[0], -1, -1)
        for block in self.blocks:
            q = block(q, feats)
        return self.proj(self.norm(q))


class PerceiverBlock(nn.Module):
    """Flamingo's perceiver attention: latents attend to [image features; latents], then an MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm_x, self.norm_l, self.norm_mlp = nn.LayerNorm(width), nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, latents, x):
        lat = self.norm_l(latents)
        kv = torch.cat([self.norm_x(x), lat], dim=1)
        latents = latents + self.attn(lat, kv, kv, need_weights=False)[0]
        return latents + self.mlp(self.norm_mlp(latents))


class PerceiverResampler(nn.Module):
    """A fixed number of latents resample any number of image tokens (Alayrac et al., 2022)."""

    def __init__(self, in_dim: int, out_dim: int, *, num_queries: int = 64, depth: int = 2, heads: int = 8,
                 width: int = 768):
        super().__init__()
        self.input = nn.Linear(in_dim, width)
        self.latents = nn.Parameter(torch.randn(1, num_queries, width) * 0.02)
        self.blocks = nn.ModuleList(PerceiverBlock(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, out_dim)

    def forward(self, feats):
        x = self.input(feats)
        lat = self.latents.expand(feats.shape[0], -1, -1)
        for block in self.blocks:
            lat = block(lat, x)
        return self.proj(self.norm(lat))


@dataclass(frozen=True)
class ProjectorKind:
    """One kind of projector: ``build(in_dim, out_dim, **options)`` and the family it belongs to."""

    name: str
    family: str                                  # the projector family recorded with results ("mlp", ...)
    build: Callable[..., nn.Module]
    options: tuple[str, ...] | None = None       # the options a spec may set; None: options are ignored
    tokens: Callable[[nn.Module], int] | None = None  # tokens it emits; None: one per patch

    def __call__(self, spec: dict, in_dim: int, out_dim: int) -> tuple[nn.Module, int | None]:
        if self.options is not None and set(spec) - set(self.options):
            raise ModelLoadError(f"projector {self.name!r}: unknown option(s) {sorted(set(spec) - set(self.options))}; "
                                 f"known: {sorted(self.options)}.")
        module = self.build(in_dim, out_dim, **spec) if self.options else self.build(in_dim, out_dim)
        return module, self.tokens(module) if self.tokens else None


REGISTRY: dict[str, ProjectorKind] = {}


def register_projector(kind: ProjectorKind) -> None:
    if kind.name in REGISTRY:
        raise ValueError(f"projector {kind.name!r} is registered twice")
    REGISTRY[kind.name] = kind


_QUERY_OPTIONS = ("num_queries", "depth", "heads", "width")
register_projector(ProjectorKind("linear", "linear", nn.Linear))
register_projector(ProjectorKind(  # LLaVA-1.5's projector
    "mlp2x_gelu", "mlp", lambda i, o: nn.Sequential(nn.Linear(i, o), nn.GELU(), nn.Linear(o, o))))
register_projector(ProjectorKind("qformer", "q-former", QueryTransformer, _QUERY_OPTIONS,
                                 tokens=lambda m: m.queries.shape[1]))
register_projector(ProjectorKind("perceiver", "resampler", PerceiverResampler, _QUERY_OPTIONS,
                                 tokens=lambda m: m.latents.shape[1]))


def build_projector(spec, in_dim: int, out_dim: int) -> tuple[nn.Module, int | None]:
    """(projector, tokens it emits or None for one per patch) from a name or ``{"type": ..., options}``."""
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("type", None)
    if kind not in REGISTRY:
        names = tuple(REGISTRY)
        close = difflib.get_close_matches(str(kind), names, n=2, cutoff=0.4)
        raise ModelLoadError(f"Unknown projector {kind!r}." + (f" Did you mean {', '.join(map(repr, close))}?"
                                                               if close else "") + f" Choose from {names}.")
    return REGISTRY[kind](spec, in_dim, out_dim)


def family(spec) -> str:
    """The projector family of a spec's ``projector`` entry."""
    return REGISTRY[spec if isinstance(spec, str) else spec.get("type")].family


__all__ = ["REGISTRY", "PerceiverResampler", "ProjectorKind", "QueryTransformer", "build_projector", "family",
           "register_projector"]
