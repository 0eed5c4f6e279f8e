"""The paper's published numbers (Verma et al., ACL 2024; LLaVA-1.5-7B, macro-F1), as data.

They are shown only in their own, labelled section (``--reference``) and are never mixed with measured rows:
they come from the authors' setup (full fine-tuning, free-text generation with sampling, probes early-stopped on
the test split), not from projbench's protocol, and they report no spread over seeds.
"""

from __future__ import annotations

from dataclasses import dataclass

from benchmark.schema import Regime

from .stats import pct_change

SOURCE = ("Verma et al., Cross-Modal Projection in Multimodal LLMs Doesn't Really Project Visual Attributes to "
          "Textual Space, ACL 2024 (arXiv 2402.16832)")
MODEL = "LLaVA-1.5-7B (paper)"
PROJECTOR_FAMILY = "mlp"


@dataclass(frozen=True)
class ReferenceRow:
    task: str
    zero_shot: float
    ft_proj: float
    ft_e2e: float
    probe_original: float
    probe_ft_proj: float
    probe_ft_e2e: float
    # Baselines (Table 1: uniform random and CLIP ViT-L/14-336 zero-shot; Table 3: MLP on the CLIP image embedding)
    random: float | None = None
    clip_zero_shot: float | None = None
    clip_probe: float | None = None

    def gain_vs_clip(self, regime: str) -> float | None:
        return None if self.clip_zero_shot is None else self.f1(regime) - self.clip_zero_shot

    def f1(self, regime: str) -> float:
        return {Regime.ZERO_SHOT: self.zero_shot, Regime.FT_PROJ: self.ft_proj, Regime.FT_E2E: self.ft_e2e}[regime]

    def probe(self, regime: str) -> float:
        return {Regime.ZERO_SHOT: self.probe_original, Regime.FT_PROJ: self.probe_ft_proj, Regime.FT_E2E: self.probe_ft_e2e}[regime]

    # The paper gives no per-seed values, so changes are plain differences of its reported means (no spread).
    def gain(self, regime: str) -> float:
        return self.f1(regime) - self.zero_shot

    def gain_pct(self, regime: str) -> float | None:
        return pct_change(self.f1(regime), self.zero_shot)

    def richness(self, regime: str) -> float:
        return self.probe(regime) - self.probe_original

    def richness_pct(self, regime: str) -> float | None:
        return pct_change(self.probe(regime), self.probe_original)


# Task labels name the paper's datasets; the projbench task names are in parentheses where they exist.
ROWS = (
    ReferenceRow("Agriculture (PlantDoc; agri)", 0.1064, 0.2221, 0.5984, 0.5701, 0.4134, 0.5346,
                 random=0.0309, clip_zero_shot=0.4165, clip_probe=0.6991),
    ReferenceRow("Textures (DTD; textures)", 0.1882, 0.4505, 0.7446, 0.6401, 0.4736, 0.6212,
                 random=0.0214, clip_zero_shot=0.4582, clip_probe=0.7644),
    ReferenceRow("Dermatology (DermNet, 23 classes; derm)", 0.0658, 0.2932, 0.4947, 0.3105, 0.2182, 0.2525,
                 random=0.0451, clip_zero_shot=0.1783, clip_probe=0.6046),
    ReferenceRow("Humanitarian (CrisisMMD, 4 classes; humanitarian)", 0.5169, 0.6227, 0.7950, 0.7498, 0.6025,
                 0.7238, random=0.2425, clip_zero_shot=0.4139, clip_probe=0.7506),
)
