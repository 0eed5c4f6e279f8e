"""Checks of the ``projection`` protocol: the shapes of features and image tokens, and a projector whose output
depends on the image (a vacuous twin would let every comparison of two paths pass)."""

from __future__ import annotations

import torch

from .report import blames_adapter, fail


@blames_adapter
def check_shapes(adapter, store, image=None) -> None:
    """vision_features is (B, N, D); project gives (B, num_image_tokens, LLM width); ``num_image_tokens`` is the
    number of image tokens the model's own processor writes for ``image`` (if given and the adapter has a
    native reference)."""
    feats = store.get(range(2))
    if feats.dim() != 3 or feats.shape[0] != 2:
        fail("vision_features()", "must return (B, N, D) for B images", "(2, N, D)", tuple(feats.shape))
    tokens = adapter.project(feats)
    width = adapter.model.get_input_embeddings().embedding_dim
    declared = adapter.num_image_tokens
    native = _native_image_tokens(adapter, image)
    if tokens.dim() == 3 and tokens.shape[0] == 2 and tokens.shape[2] == width and tokens.shape[1] != declared:
        _blame_token_count(int(tokens.shape[1]), declared, native)
    if tuple(tokens.shape) != (2, declared, width):
        fail("project()", "must return (B, num_image_tokens, LLM embedding width)", (2, declared, width),
             tuple(tokens.shape))
    if native is not None and native != declared:
        fail("num_image_tokens", "is not the number of image tokens the model's own processor writes for one image "
             "(dynamic tiling such as crop_to_patches or image splitting left on?)", native, declared)


def _native_image_tokens(adapter, image) -> int | None:
    """How many image tokens the model's processor writes for one image, or None (no image, no native reference)."""
    if image is None:
        return None
    try:
        ids = adapter.native_inputs("Describe it.", image)["input_ids"][0].tolist()
    except NotImplementedError:
        return None
    return ids.count(adapter.image_token_id)


def _blame_token_count(made: int, declared: int, native: int | None) -> None:
    """project() makes ``made`` tokens per image, num_image_tokens says ``declared``: fail naming the wrong one."""
    if native == made:
        fail("num_image_tokens", f"says {declared} image tokens per image, but project() gives {made} and the "
             f"model's own processor writes {native}: num_image_tokens is wrong", made, declared)
    if native == declared:
        fail("project()", f"gives {made} image tokens per image; num_image_tokens and the model's processor both "
             f"say {declared}", declared, made)
    seen = "" if native is None else f", the model's processor writes {native}"
    fail("project()/num_image_tokens", f"project() gives {made} image tokens per image but num_image_tokens says "
         f"{declared}{seen}: one of them is wrong", declared, made)


@blames_adapter
def check_projector_is_informative(adapter, features: torch.Tensor) -> None:
    """``project()`` output is not all zeros and differs between images (else every comparison is vacuous)."""
    spread = float((features.float() - features.float().mean(0, keepdim=True)).abs().max())
    if spread <= 1e-6 * max(1e-12, float(features.float().abs().max())) or spread < 1e-6:
        fail("vision_features()", "the features are the same for every image: the vision encoder of this twin is "
             "vacuous (weights initialised at ~0?), so no check can see what the adapter does with the image",
             "features that differ between images", f"max deviation from the mean {spread:.3g}, "
             f"max |feature| {float(features.float().abs().max()):.3g}")
    with torch.no_grad():
        out = adapter.project(features).float()
    norms = out.flatten(1).norm(dim=-1)
    zero_params = [n for n, p in adapter.projector_module().named_parameters() if p.dim() >= 2 and not bool(p.any())]
    hint = (f"; all-zero projector weights: {zero_params[:4]} (the model's _init_weights zeroes them: the twin's "
            "build() must re-randomise them, e.g. benchmark.adapters.tiny.rerandomise_zero_matrices(out) after "
            "save_pretrained)") if zero_params else ""
    if not bool((norms > 0).all()):
        fail("project()", "the projector output is all zeros: this twin is vacuous, every check comparing two "
             "paths would pass whatever the adapter does with the image" + hint,
             "a non-zero norm per image", f"norms {[round(float(x), 6) for x in norms]}")
    spread = float((out - out.mean(0, keepdim=True)).abs().max())
    if spread <= 1e-6 * float(norms.max()):
        fail("project()", "the projector gives the same output for every image: the image cannot matter" + hint,
             "outputs that differ between images", f"max deviation from the mean {spread:.3g} at norm "
             f"{float(norms.max()):.3g}")


__all__ = ["check_projector_is_informative", "check_shapes"]
