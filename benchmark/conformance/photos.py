"""What the checks run on: real photos of a three-class task, and their features kept in memory.

The photos come from the ``conformal-clip-data`` package (in the ``test`` extra): textile surfaces, nominal or
with a global or a local defect. Without it the checks that need photos skip with the command to install it.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from benchmark.tasks.base import Sample

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


class MemoryStore:
    """In-memory stand-in for the on-disk FeatureStore (same ``get``), filled by the real vision encoder."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return len(self.features)

    def get(self, indices):
        idx = indices.tolist() if hasattr(indices, "tolist") else list(indices)
        return self.features[idx]


def real_photos(per_class: int = 4) -> list:
    """Real RGB photos with class indices: textile nominal / global / local defects."""
    try:
        import conformal_clip_data
    except ImportError:
        pytest.skip("the conformance suite needs `pip install 'projbench[test]'` (conformal-clip-data)")
    from PIL import Image

    root = Path(conformal_clip_data.textile_simulated_root())
    out = []
    for label, folder in enumerate(("nominal", "global", "local")):
        out += [(Image.open(p).convert("RGB"), label) for p in sorted((root / folder).glob("*.jpg"))[:per_class]]
    return out


def samples_for(images) -> list[Sample]:
    out = []
    for i, (img, label) in enumerate(images):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data = buf.getvalue()
        out.append(Sample(uid=f"img{i:03d}", label=label, load_bytes=lambda d=data: d))
    return out


def encode_photos(adapter, photos):
    """Real images through the adapter's own processor and frozen vision encoder: (pixels, store, samples)."""
    px = adapter.preprocess([im for im, _ in photos])
    return px, MemoryStore(adapter.vision_features(px)), samples_for(photos)


__all__ = ["CLASSES", "DOMAIN", "MemoryStore", "encode_photos", "real_photos", "samples_for"]
