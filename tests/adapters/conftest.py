"""Fixtures the adapter tests share."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def images(real_images):
    """Four real photos, then two synthetic images of other sizes and aspect ratios (97 x 31 red, 20 x 140 green):
    a processor that tiles, grids or pads by aspect ratio treats them otherwise than the photos."""
    from PIL import Image

    extra = [Image.new("RGB", (97, 31), (200, 30, 30)), Image.new("RGB", (20, 140), (30, 200, 30))]
    return [im for im, _ in real_images[:4]] + extra
