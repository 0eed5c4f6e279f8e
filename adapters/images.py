"""Image geometry before a model's own image processor: LLaVA-1.5's pad-to-square.

LLaVA-1.5 (Liu et al., *Improved Baselines with Visual Instruction Tuning*, 2023) trains and evaluates with
``image_aspect_ratio = "pad"``: its ``expand2square`` pastes the image in the middle of a square canvas whose side
is the longer edge, filled with the CLIP image mean as 8-bit RGB (``int(255 * mean)`` per channel), and only then
runs CLIP's processor (resize the shorter edge, centre crop: a no-op on a square). The llava-hf processor skips
the padding and centre-crops, which drops the long sides of every non-square photo (25 % of a 4:3 image's area).

Written from the description above (``llava/mm_utils.py`` and ``llava/train/train.py`` of the LLaVA repository,
haotian-liu/LLaVA), not copied.
"""

from __future__ import annotations

from collections.abc import Sequence

# How an adapter makes a non-square image square before its processor: "pad" (LLaVA-1.5's expand2square with the
# mean colour) or "processor" (leave it to the model's processor: centre crop, squash or tiling, as it does).
IMAGE_ASPECTS = ("pad", "processor")


def mean_colour(image_mean: Sequence[float]) -> tuple[int, ...]:
    """The padding colour LLaVA derives from a processor's ``image_mean``: ``int(255 * m)`` (truncated) per channel."""
    return tuple(int(255 * m) for m in image_mean)


def pad_to_square(image, colour: tuple[int, ...]):
    """``image`` (PIL) centred on a square canvas of its longer side filled with ``colour``; a square image as is.

    The offset of the short side is ``(long - short) // 2``, so an odd margin puts the extra pixel after the image,
    as LLaVA's ``expand2square`` does.
    """
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), tuple(colour))
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def check_image_aspect(value: str, *, adapter: str) -> str:
    """``value`` if it is one of :data:`IMAGE_ASPECTS`, else a clear error naming the adapter and the choices."""
    if value not in IMAGE_ASPECTS:
        raise ValueError(f"{adapter}: image_aspect {value!r} is not one of {', '.join(IMAGE_ASPECTS)} "
                         "('pad': pad to a square with the image mean first, as LLaVA-1.5 trained; 'processor': the "
                         "processor's own resize and centre crop).")
    return value
