"""LLaVA-1.5's image preprocessing: pad to a square with the CLIP mean colour, then CLIP's processor.

Known answers: a real 4:3 DermNet-subset photo (192 x 144) padded by hand with numpy (24 rows of the mean colour
above and below, the photo unchanged in between), and the tiny twin's pixel values against transformers'
``CLIPImageProcessor`` applied to that hand-padded image. The padding is part of the preprocessing signature, so
a padded and an unpadded adapter never share cached features.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from benchmark.registry import Plugins
from benchmark.storage.features import cache_key, extract
from benchmark.tasks.base import Sample
from conftest import shared_data

CLIP_MEAN_RGB = (122, 116, 104)  # int(255 * m) of OpenAI CLIP's mean (0.48145466, 0.4578275, 0.40821073)


def derm_photo() -> Image.Image:
    path = sorted((shared_data("derm") / "train").rglob("*.jpg"))[0]
    image = Image.open(path).convert("RGB")
    assert image.size == (192, 144), image.size  # 4:3, the shape the issue is about
    return image


def hand_padded(image: Image.Image) -> np.ndarray:
    """The photo on a square of its longer side, centred, the rest CLIP's mean colour, built with numpy alone."""
    a = np.asarray(image)
    h, w, _ = a.shape
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = CLIP_MEAN_RGB
    top, left = (side - h) // 2, (side - w) // 2
    out[top: top + h, left: left + w] = a
    return out


@pytest.fixture(scope="module")
def twins():
    spec = Plugins(autoload=False).adapters.get("llava15-tiny")
    return spec.factory(), spec.factory(image_aspect="processor")


def test_a_4_3_photo_is_padded_to_square_with_the_mean_colour(twins):
    padded_adapter, _ = twins
    photo = derm_photo()
    got = np.asarray(padded_adapter.square(photo))
    assert got.shape == (192, 192, 3)
    assert (got[:24] == CLIP_MEAN_RGB).all() and (got[168:] == CLIP_MEAN_RGB).all()  # the short sides
    assert np.array_equal(got[24:168], np.asarray(photo))                          # the photo, untouched
    assert np.array_equal(got, hand_padded(photo))
    # A portrait photo is padded left and right; a square one is left as it is.
    portrait = photo.transpose(Image.Transpose.ROTATE_90)
    assert np.array_equal(np.asarray(padded_adapter.square(portrait)), hand_padded(portrait))
    square = photo.crop((0, 0, 144, 144))
    assert np.array_equal(np.asarray(padded_adapter.square(square)), np.asarray(square))


def test_tiny_twin_pixels_equal_clip_processor_on_the_hand_padded_image(twins):
    from transformers import CLIPImageProcessor

    padded_adapter, cropping_adapter = twins
    photo = derm_photo()
    ip = padded_adapter.processor.image_processor
    reference = CLIPImageProcessor(size=ip.size, crop_size=ip.crop_size, image_mean=ip.image_mean,
                                   image_std=ip.image_std, do_center_crop=True, do_resize=True)
    want = reference(images=[Image.fromarray(hand_padded(photo))], return_tensors="pt")["pixel_values"]
    assert torch.equal(padded_adapter.preprocess([photo]).cpu(), want)
    cropped = reference(images=[photo], return_tensors="pt")["pixel_values"]
    assert torch.equal(cropped_adapter_px := cropping_adapter.preprocess([photo]).cpu(), cropped)
    assert (cropped_adapter_px - want).abs().max() > 0.1  # the two preprocessings really differ on this photo


def _sample(image: Image.Image, uid: str) -> Sample:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    data = buf.getvalue()
    return Sample(uid=uid, label=0, load_bytes=lambda d=data: d)


def test_padded_and_cropped_adapters_do_not_share_cached_features(twins, tmp_path):
    padded_adapter, cropping_adapter = twins
    assert padded_adapter.preprocessing_signature()["image_aspect"] == "pad"
    assert padded_adapter.preprocessing_signature()["pad_colour"] == list(CLIP_MEAN_RGB)
    assert cache_key(padded_adapter, "task", "train") != cache_key(cropping_adapter, "task", "train")
    samples = [_sample(derm_photo(), "derm0")]
    padded, _ = extract(padded_adapter, samples, cache_dir=tmp_path, task_fingerprint="task", split="train",
                        progress=False)
    cropped, seconds = extract(cropping_adapter, samples, cache_dir=tmp_path, task_fingerprint="task",
                               split="train", progress=False)
    assert seconds > 0 and padded.directory != cropped.directory  # computed again, not read from the padded entry
    want_pad = padded_adapter.vision_features(padded_adapter.preprocess([derm_photo()])).cpu()
    want_crop = cropping_adapter.vision_features(cropping_adapter.preprocess([derm_photo()])).cpu()
    assert torch.equal(padded.get([0]), want_pad) and torch.equal(cropped.get([0]), want_crop)
    assert not torch.allclose(want_pad, want_crop)


def test_an_unknown_image_aspect_is_refused_with_the_choices():
    spec = Plugins(autoload=False).adapters.get("llava15-tiny")
    with pytest.raises(ValueError, match="image_aspect 'letterbox' is not one of pad, processor"):
        spec.factory(image_aspect="letterbox")
