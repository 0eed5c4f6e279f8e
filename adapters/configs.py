"""Published configurations of the built-in adapters' checkpoints, for `plan` (no weights, no download).

Each function returns an :class:`Architecture`: the real transformers classes built from the values of the
checkpoint's ``config.json`` on the hub (only the fields that change shapes are written out; the rest are the
classes' defaults, which match those checkpoints). The adapters attach them to their specs; the core reaches them
only through the registry.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Architecture


def _decoder_and_head(llm: nn.Module):
    """(decoder, lm_head) of an LLM part: a ModuleDict {decoder, lm_head} or a *ForCausalLM."""
    if isinstance(llm, nn.ModuleDict):
        mods = list(llm.values())
        return mods[0], mods[1]
    return llm.model, llm.lm_head


def llm_forward(parts: dict, embeds: torch.Tensor):
    decoder, head = _decoder_and_head(parts["llm"])
    # An explicit 4-D additive mask: transformers then uses it as is, instead of inspecting a 2-D mask or the
    # positions with ``.item()``, which meta tensors cannot answer.
    # Explicit positions too: OPT derives them from the mask by a cumulative sum, which a 4-D mask would garble.
    b, n = embeds.shape[:2]
    mask = torch.zeros((b, 1, n, n), device=embeds.device, dtype=embeds.dtype)
    positions = torch.arange(n, device=embeds.device).expand(b, n)
    hidden = decoder(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                     use_cache=False).last_hidden_state
    return head(hidden)


def _llama(**kw):
    from transformers import LlamaConfig

    return LlamaConfig(**{"max_position_embeddings": 4096, "rms_norm_eps": 1e-5, **kw})


def _clip_l(image_size: int):
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                            image_size=image_size, patch_size=14, projection_dim=768)


def _hf_parts(model):
    return {"vision": model.model.vision_tower, "projector": model.model.multi_modal_projector,
            "llm": nn.ModuleDict({"language_model": model.model.language_model, "lm_head": model.lm_head})}


def _vision_last_hidden(module_name: str):
    def run(model, pixels):
        return getattr(model.model, module_name)(pixels).last_hidden_state
    return run


def _llava(text, source: str) -> Architecture:
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    config = LlavaConfig(vision_config=_clip_l(336).to_dict(), text_config=text.to_dict(), image_token_id=32000,
                         vision_feature_layer=-2, vision_feature_select_strategy="default",
                         projector_hidden_act="gelu")
    return Architecture(build=lambda: LlavaForConditionalGeneration(config), parts=_hf_parts, image_size=336,
                        feature_shape=(576, 1024), image_tokens=576, llm_config=text, source=source,
                        vision=lambda m, px: m.model.vision_tower(px).last_hidden_state)


def llava15_7b() -> Architecture:
    return _llava(_llama(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=32, vocab_size=32064), "llava-hf/llava-1.5-7b-hf config.json")


def llava15_13b() -> Architecture:
    return _llava(_llama(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40,
                         num_key_value_heads=40, vocab_size=32064), "llava-hf/llava-1.5-13b-hf config.json")


def paligemma_3b() -> Architecture:
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        SiglipVisionConfig,
    )

    text = GemmaConfig(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
                       num_key_value_heads=1, head_dim=256, vocab_size=257216)
    vision = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                num_attention_heads=16, patch_size=14, image_size=224, projection_dim=2048)
    config = PaliGemmaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), projection_dim=2048,
                             hidden_size=2048, image_token_id=257152)
    return Architecture(build=lambda: PaliGemmaForConditionalGeneration(config), parts=_hf_parts, image_size=224,
                        feature_shape=(256, 1152), image_tokens=256, llm_config=text,
                        source="google/paligemma-3b-pt-224 config.json",
                        vision=lambda m, px: m.model.vision_tower(px).last_hidden_state)


def limber_gemma2() -> Architecture:
    from transformers import CLIPVisionModel, Gemma2Config, Gemma2ForCausalLM

    text = Gemma2Config(hidden_size=2304, intermediate_size=9216, num_hidden_layers=26, num_attention_heads=8,
                        num_key_value_heads=4, head_dim=256, vocab_size=256000)
    vision = _clip_l(224)

    def build():
        return nn.ModuleDict({"vision_tower": CLIPVisionModel(vision), "multi_modal_projector": nn.Linear(1024, 2304),
                              "language_model": Gemma2ForCausalLM(text)})

    return Architecture(build=build, image_size=224, feature_shape=(256, 1024), image_tokens=256, llm_config=text,
                        parts=lambda m: {"vision": m["vision_tower"], "projector": m["multi_modal_projector"],
                                         "llm": m["language_model"]},
                        source="openai/clip-vit-large-patch14 + google/gemma-2-2b-it config.json",
                        vision=lambda m, px: m["vision_tower"](px).last_hidden_state)


def _qformer_parts(model):
    return {"vision": model.vision_model,
            "projector": nn.ModuleDict({"qformer": model.qformer, "language_projection": model.language_projection}),
            "llm": model.language_model}


def _blip_project(model, feats):
    queries = model.query_tokens.expand(feats.shape[0], -1, -1)
    out = model.qformer(query_embeds=queries, encoder_hidden_states=feats).last_hidden_state
    return model.language_projection(out[:, : queries.shape[1]])


def _blip_vision():
    from transformers import Blip2VisionConfig

    return Blip2VisionConfig(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                             image_size=224, patch_size=14)


def blip2_opt27b() -> Architecture:
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig, OPTConfig

    text = OPTConfig(hidden_size=2560, ffn_dim=10240, num_hidden_layers=32, num_attention_heads=32,
                     vocab_size=50272, max_position_embeddings=2048, word_embed_proj_dim=2560)
    qformer = Blip2QFormerConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                 intermediate_size=3072, encoder_hidden_size=1408, vocab_size=30522)
    config = Blip2Config(vision_config=_blip_vision().to_dict(), qformer_config=qformer.to_dict(),
                         text_config=text.to_dict(), num_query_tokens=32)
    return Architecture(build=lambda: Blip2ForConditionalGeneration(config), parts=_qformer_parts, image_size=224,
                        feature_shape=(257, 1408), image_tokens=32, llm_config=text,
                        source="Salesforce/blip2-opt-2.7b config.json", project=_blip_project,
                        vision=lambda m, px: m.vision_model(px).last_hidden_state)


def instructblip_vicuna7b() -> Architecture:
    from transformers import (
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipQFormerConfig,
    )

    text = _llama(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=32, vocab_size=32001, max_position_embeddings=2048, rms_norm_eps=1e-6)
    qformer = InstructBlipQFormerConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                        intermediate_size=3072, encoder_hidden_size=1408, vocab_size=30523)
    config = InstructBlipConfig(vision_config=_blip_vision().to_dict(), qformer_config=qformer.to_dict(),
                                text_config=text.to_dict(), num_query_tokens=32)

    def project(model, feats):  # the instruction tokens also enter the Q-Former; queries alone counted here
        queries = model.query_tokens.expand(feats.shape[0], -1, -1)
        ids = torch.zeros((feats.shape[0], 1), dtype=torch.long, device=feats.device)
        out = model.qformer(input_ids=ids, query_embeds=queries, encoder_hidden_states=feats).last_hidden_state
        return model.language_projection(out[:, : queries.shape[1]])

    return Architecture(build=lambda: InstructBlipForConditionalGeneration(config), parts=_qformer_parts,
                        image_size=224, feature_shape=(257, 1408), image_tokens=32, llm_config=text,
                        source="Salesforce/instructblip-vicuna-7b config.json", project=project,
                        vision=lambda m, px: m.vision_model(px).last_hidden_state)


def _idefics3(vision_kw: dict, text, *, scale: int, image_size: int, patch: int, image_token_id: int,
              source: str):
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration, Idefics3VisionConfig

    vision = Idefics3VisionConfig(image_size=image_size, patch_size=patch, **vision_kw)
    config = Idefics3Config(vision_config=vision.to_dict(), text_config=text.to_dict(), scale_factor=scale,
                            image_token_id=image_token_id)
    patches = (image_size // patch) ** 2
    return Architecture(
        build=lambda: Idefics3ForConditionalGeneration(config), image_size=image_size,
        parts=lambda m: {"vision": m.model.vision_model, "projector": m.model.connector,
                         "llm": nn.ModuleDict({"text_model": m.model.text_model, "lm_head": m.lm_head})},
        feature_shape=(patches, vision.hidden_size), image_tokens=patches // scale**2, llm_config=text,
        source=source, vision=_idefics3_vision)


def _idefics3_vision(model, pixels):
    """The SigLIP encoder on whole images (every patch real), without the forward's padding-mask inspection
    (``create_bidirectional_mask`` asks ``.all()`` of it, which a meta tensor cannot answer)."""
    vm = model.model.vision_model
    side = pixels.shape[-1] // vm.config.patch_size
    patches = torch.ones((pixels.shape[0], side, side), dtype=torch.bool, device=pixels.device)
    hidden = vm.embeddings(pixel_values=pixels, patch_attention_mask=patches)
    return vm.post_layernorm(vm.encoder(inputs_embeds=hidden, attention_mask=None).last_hidden_state)


def smolvlm_256m() -> Architecture:
    text = _llama(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                  num_key_value_heads=3, vocab_size=49280, tie_word_embeddings=True, max_position_embeddings=8192)
    return _idefics3(dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
                     text, scale=4, image_size=512, patch=16, image_token_id=49190,
                     source="HuggingFaceTB/SmolVLM-256M-Instruct config.json")


def idefics3_8b() -> Architecture:
    text = _llama(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=128259, rope_theta=500000.0, max_position_embeddings=10240)
    return _idefics3(dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16),
                     text, scale=2, image_size=364, patch=14, image_token_id=128257,
                     source="HuggingFaceM4/Idefics3-8B-Llama3 config.json")


def qwen2vl_2b(image_size: int = 448) -> Architecture:
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    config = Qwen2VLConfig(
        vision_config=dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16, mlp_ratio=4, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, in_channels=3),
        text_config=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                         num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True, rope_theta=1e6),
        tie_word_embeddings=True)
    side = image_size // 14

    def parts(m):
        visual = m.model.visual
        return {"vision": nn.ModuleDict({k: v for k, v in visual.named_children() if k != "merger"}),
                "projector": visual.merger,
                "llm": nn.ModuleDict({"language_model": m.model.language_model, "lm_head": m.lm_head})}

    def vision(m, pixels):
        """The vision transformer on one image's patches, without the merger (the projector, counted apart).

        Its forward takes the patches flattened over images, (patches, channels x temporal x patch x patch), with
        the grid (t, h, w) of each image. The grid is given on the CPU: the sequence boundaries it yields are read
        with ``.tolist()`` to split attention per image, which a meta tensor cannot answer; the rotary positions
        are computed from it on the CPU too and moved to the model's (meta) device.
        """
        from transformers.vision_utils import get_vision_cu_seqlens, get_vision_position_ids

        visual, vc = m.model.visual, m.config.vision_config  # the built model's: a sliced or twin config too
        side = pixels.shape[-1] // vc.patch_size
        grid = torch.tensor([[1, side, side]] * pixels.shape[0])
        flat = pixels.new_empty((pixels.shape[0] * side * side,
                                 vc.in_channels * vc.temporal_patch_size * vc.patch_size ** 2))
        merger, visual.merger = visual.merger, nn.Identity()
        try:
            return visual(flat, grid_thw=grid, cu_seqlens=get_vision_cu_seqlens(grid),
                          position_ids=get_vision_position_ids(grid, vc.spatial_merge_size).to(pixels.device))
        finally:
            visual.merger = merger

    # The merger takes the patch sequence flattened over images: (patches, width) -> (patches / 4, hidden).
    return Architecture(build=lambda: Qwen2VLForConditionalGeneration(config), parts=parts, image_size=image_size,
                        feature_shape=(side * side, 1280), image_tokens=side * side // 4,
                        llm_config=config.text_config, source="Qwen/Qwen2-VL-2B-Instruct config.json",
                        vision=vision,
                        project=lambda m, f: m.model.visual.merger(f.reshape(-1, f.shape[-1])).reshape(
                            f.shape[0], -1, m.config.text_config.hidden_size))


def internvl3_1b() -> Architecture:
    """InternVL3-1B-hf: InternViT-300M-448px (24 layers, width 1024) -> pixel shuffle 0.5 -> LayerNorm-MLP ->
    Qwen2.5-0.5B (24 layers, width 896, 14 heads, 2 KV heads), one 448-pixel tile: 256 image tokens. The LM head
    is tied to the input embeddings, as in Qwen2.5-0.5B and InternVLConfig's default."""
    from transformers import InternVLConfig, InternVLForConditionalGeneration

    config = InternVLConfig(
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           image_size=448, patch_size=14, attention_bias=True, norm_type="layer_norm"),
        text_config=dict(model_type="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, vocab_size=151674, rope_theta=1e6,
                         max_position_embeddings=32768, tie_word_embeddings=True),
        image_token_id=151667, image_seq_length=256, downsample_ratio=0.5, tie_word_embeddings=True)

    def vision(m, pixels):
        """The vision tower, then the parameter-free pixel shuffle: what enters the projector."""
        h = m.model.vision_tower(pixel_values=pixels).last_hidden_state[:, 1:]
        b, n, d = h.shape
        side = int(n**0.5)
        r = m.config.downsample_ratio
        return m.model.pixel_shuffle(h.reshape(b, side, side, d), scale_factor=r).reshape(
            b, int(n * r * r), int(d / (r * r)))

    return Architecture(build=lambda: InternVLForConditionalGeneration(config), parts=_hf_parts, image_size=448,
                        feature_shape=(256, 4096), image_tokens=256, llm_config=config.text_config,
                        source="OpenGVLab/InternVL3-1B-hf config.json", vision=vision)
