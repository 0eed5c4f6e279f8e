"""Composed MLLMs: a timm / open_clip vision backbone (or a fusion of several) + a named projector + any HF causal LM.

LiMBeR- and Prismatic-style models need no hand-written adapter: a small JSON spec names the parts, and the
benchmark can compare projector families with the vision encoder and the LLM held fixed. ``--model compose
--model-path SPEC`` where SPEC is a ``.json`` file or a folder holding ``config.json`` (the spec) and the weights::

    {
      "vision": [{"library": "timm", "name": "vit_large_patch14_reg4_dinov2.lvd142m", "pretrained": true},
                 {"library": "open_clip", "name": "ViT-SO400M-14-SigLIP", "pretrained": "webli"}],
      "projector": "mlp2x_gelu",
      "llm": "lmsys/vicuna-7b-v1.5",
      "template": "{bos}{image}\\nUSER: {question}\\nASSISTANT:"
    }

* ``vision``: one backbone or a list (a fusion: patch features concatenated channel-wise, as in Prismatic's
  DINOv2 + SigLIP; the backbones must give the same number of patches). Per backbone: ``library`` (``timm`` or
  ``open_clip``), ``name`` (a timm model name; an open_clip model name, ``local-dir:DIR`` or the tiny twin
  ``tiny-clip``), ``pretrained`` (timm: true/false; open_clip: a tag or weight file), ``weights`` (a safetensors
  state dict to load, relative to the spec's folder), ``layer`` (hidden state fed to the projector, default -2:
  the penultimate block, as Prismatic and LLaVA), ``image_size``, and ``kwargs`` for ``timm.create_model``.
* ``projector``: ``linear``, ``mlp2x_gelu`` (LLaVA-1.5), ``qformer`` (learned queries with self- and
  cross-attention, BLIP-2 style) or ``perceiver`` (Flamingo's perceiver resampler); a name or
  ``{"type": ..., "num_queries", "depth", "heads", "width"}``. Weights: ``projector.safetensors`` in the spec's
  folder (or the file named by ``projector_weights``); without one, a seeded random projector (a warning).
* ``llm``: a hub id or a folder (``save_pretrained`` layout: config.json, model.safetensors, tokenizer), relative
  to the spec's folder or absolute; loaded with ``AutoModelForCausalLM``.
* ``template``, ``image_token`` (a token the tokenizer has; its id only marks where the image tokens go),
  ``answer_end_token`` (default: the tokenizer's EOS), ``projector_seed``.

docs/composing-models.md shows how to bring a trained projector.
"""

from __future__ import annotations

import difflib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import ModelLoadError

from . import catalog
from .loading import load_pretrained, resolve_dtype
from .parts import PartsAdapter, PartsModel
from .spec import TINY_CLIP
from .tiny import build_tokenizer

SPEC_FILE = "config.json"
DEFAULT_TEMPLATE = "{bos}{image}\nUSER: {question}\nASSISTANT:"
PROJECTORS = ("linear", "mlp2x_gelu", "qformer", "perceiver")
FAMILIES = {"linear": "linear", "mlp2x_gelu": "mlp", "qformer": "q-former", "perceiver": "resampler"}
_SPEC_KEYS = {"vision", "projector", "llm", "template", "image_token", "answer_end_token", "projector_seed",
              "projector_weights", "model_type", "description"}
_BACKBONE_KEYS = {"library", "name", "pretrained", "weights", "layer", "image_size", "kwargs"}


# -- projectors ----------------------------------------------------------------------------------------------------
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

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 32, depth: int = 2, heads: int = 8,
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

    def __init__(self, in_dim: int, out_dim: int, num_queries: int = 64, depth: int = 2, heads: int = 8,
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


def build_projector(spec, in_dim: int, out_dim: int) -> tuple[nn.Module, int | None]:
    """(projector, tokens it emits or None for one per patch) from a name or ``{"type": ..., options}``."""
    spec = {"type": spec} if isinstance(spec, str) else dict(spec)
    kind = spec.pop("type", None)
    if kind not in PROJECTORS:
        close = difflib.get_close_matches(str(kind), PROJECTORS, n=2, cutoff=0.4)
        raise ModelLoadError(f"Unknown projector {kind!r}." + (f" Did you mean {', '.join(map(repr, close))}?"
                                                               if close else "") + f" Choose from {PROJECTORS}.")
    if kind == "linear":
        return nn.Linear(in_dim, out_dim), None
    if kind == "mlp2x_gelu":  # LLaVA-1.5's projector
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.GELU(), nn.Linear(out_dim, out_dim)), None
    allowed = {"num_queries", "depth", "heads", "width"}
    if set(spec) - allowed:
        raise ModelLoadError(f"projector {kind!r}: unknown option(s) {sorted(set(spec) - allowed)}; known: "
                             f"{sorted(allowed)}.")
    cls = QueryTransformer if kind == "qformer" else PerceiverResampler
    module = cls(in_dim, out_dim, **spec)
    return module, module.queries.shape[1] if kind == "qformer" else module.latents.shape[1]


# -- vision backbones ----------------------------------------------------------------------------------------------
class Backbone(nn.Module):
    """One frozen vision backbone: pixels -> (B, patches, width) from one of its blocks, prefix tokens dropped."""

    def __init__(self, trunk: nn.Module, kind: str, layer: int, transform, width: int):
        super().__init__()
        self.trunk, self.kind, self.transform, self.width = trunk, kind, transform, width
        blocks = trunk.blocks if kind == "timm" else trunk.transformer.resblocks
        self.index = layer if layer >= 0 else len(blocks) + layer
        if not 0 <= self.index < len(blocks):
            raise ModelLoadError(f"layer {layer} is out of range for a backbone with {len(blocks)} blocks.")

    def forward(self, px):
        if self.kind == "timm":
            return self.trunk.forward_intermediates(px, indices=[self.index], norm=False, output_fmt="NLC",
                                                    intermediates_only=True)[0]
        return self.trunk.forward_intermediates(px, indices=[self.index], output_fmt="NLC",
                                                intermediates_only=True)["image_intermediates"][0]


def _load_backbone(b: dict, base: Path, cache_dir: Path | None) -> Backbone:
    unknown = set(b) - _BACKBONE_KEYS
    if unknown:
        raise ModelLoadError(f"vision backbone {b.get('name')!r}: unknown key(s) {sorted(unknown)}; known: "
                             f"{sorted(_BACKBONE_KEYS)}.")
    lib, name = b.get("library"), b.get("name")
    if lib not in ("timm", "open_clip") or not name:
        raise ModelLoadError(f"each vision backbone needs \"library\": \"timm\" or \"open_clip\" and a \"name\"; "
                             f"got {b}.")
    layer = int(b.get("layer", -2))
    if lib == "timm":
        import timm

        known = timm.list_models()
        if name.split(".")[0] not in known:
            close = difflib.get_close_matches(name.split(".")[0], known, n=3, cutoff=0.6)
            raise ModelLoadError(f"timm has no model {name!r}." + (f" Did you mean {', '.join(map(repr, close))}?"
                                                                  if close else "")
                                 + " `python -c 'import timm; print(timm.list_models(\"*dinov2*\"))'` lists them.")
        kwargs = dict(b.get("kwargs", {}))
        if b.get("image_size"):
            kwargs["img_size"] = b["image_size"]
        pretrained = bool(b.get("pretrained", False)) and not b.get("weights")
        if pretrained:
            _check_timm_weights(name)
        try:
            trunk = timm.create_model(name, pretrained=pretrained, num_classes=0, **kwargs)
        except Exception as exc:  # timm raises many kinds for a download or an option it does not take
            raise ModelLoadError(f"timm could not build {name!r} with {kwargs}: {exc}") from exc
        cfg = timm.data.resolve_data_config({}, model=trunk)
        size = getattr(getattr(trunk, "patch_embed", None), "img_size", None)
        if size:  # the pretrained config's size, unless the spec changed it
            cfg["input_size"] = (3, *size)
        transform = timm.data.create_transform(**cfg)
        width = trunk.embed_dim
        kind = "timm"
    else:
        from benchmark.baselines import ClipChoice, load_clip

        if name.startswith("local-dir:") and not Path(name[10:]).is_absolute():
            name = "local-dir:" + str(base / name[10:])
        clip = load_clip(ClipChoice(name, b.get("pretrained"), None), cache_dir or base)
        visual = clip.model.visual
        transform = clip.preprocess
        if hasattr(visual, "trunk"):  # a timm tower inside open_clip (SigLIP): use it as a timm backbone
            trunk, kind, width = visual.trunk, "timm", visual.trunk.embed_dim
        else:
            trunk, kind, width = visual, "open_clip", visual.transformer.width
    if b.get("weights"):
        from safetensors.torch import load_file

        path = _resolve(b["weights"], base)
        if not path.is_file():
            raise ModelLoadError(f"vision weights {b['weights']!r} not found (looked for {path}).")
        missing = trunk.load_state_dict(load_file(str(path)), strict=False)
        if missing.missing_keys or missing.unexpected_keys:
            raise ModelLoadError(f"{path} does not fit {lib} model {name!r}: missing {missing.missing_keys[:4]}, "
                                 f"unexpected {missing.unexpected_keys[:4]}.")
    return Backbone(trunk, kind, layer, transform, width)


def _check_timm_weights(name: str) -> None:
    """Offline: fail in seconds, naming the hub repo to fetch, instead of timm's retries."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    from benchmark.hub import download_command, hub_reachable

    repo = timm.models.get_pretrained_cfg(name).hf_hub_id if timm.models.get_pretrained_cfg(name) else None
    if repo and isinstance(try_to_load_from_cache(repo, "model.safetensors"), str):
        return
    if not hub_reachable():
        raise ModelLoadError(
            f"timm weights of {name!r} are not in the local Hugging Face cache and the hub is not reachable. Fetch "
            f"`{download_command(str(repo), 'model.safetensors')}` where it is, then set "
            "\"weights\": \"DIR/model.safetensors\" (and \"pretrained\": false) for this backbone in the spec.")


def _resolve(p: str, base: Path) -> Path:
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


# -- the composed model -------------------------------------------------------------------------------------------
class ComposedModel(PartsModel):
    """Frozen vision backbone(s) + projector + causal LM, through the LM's own forward with ``inputs_embeds``."""

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        # A fusion's preprocessed images are stacked channel-wise, three channels per backbone.
        chunks = pixel_values.split(3, dim=1)
        feats = [b(px) for b, px in zip(self.vision_tower, chunks, strict=True)]
        if len({f.shape[1] for f in feats}) > 1:
            raise ValueError(f"fused backbones give different numbers of patches: {[f.shape[1] for f in feats]}")
        return torch.cat(feats, dim=-1)


@dataclass(frozen=True)
class ComposeSpec:
    """A parsed spec: its folder (relative paths start there) and its settings."""

    base: Path
    vision: tuple[dict, ...]
    projector: object
    llm: str
    template: str = DEFAULT_TEMPLATE
    image_token: str = "<image>"
    answer_end_token: str | None = None
    projector_seed: int = 0
    projector_weights: str | None = None
    raw: dict = field(default_factory=dict)


def read_spec(source) -> ComposeSpec:
    if source is None:
        raise ModelLoadError("--model compose needs --model-path SPEC: a JSON spec file, or a folder with the spec "
                             f"as {SPEC_FILE} and the weights (see docs/composing-models.md).")
    path = Path(str(source)).expanduser()
    if path.is_dir():
        path = path / SPEC_FILE
    if not path.is_file():
        raise ModelLoadError(f"compose spec {path} not found: pass a JSON spec file or a folder holding {SPEC_FILE}.")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"compose spec {path} is not valid JSON: {exc}") from None
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise ModelLoadError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(_SPEC_KEYS)}.")
    for key in ("vision", "projector", "llm"):
        if key not in raw:
            raise ModelLoadError(f"{path}: missing {key!r} (see docs/composing-models.md for a complete spec).")
    vision = raw["vision"] if isinstance(raw["vision"], list) else [raw["vision"]]
    opts = {k: raw[k] for k in ("template", "image_token", "answer_end_token", "projector_seed",
                                "projector_weights") if k in raw}
    return ComposeSpec(path.parent, tuple(vision), raw["projector"], raw["llm"], raw=raw, **opts)


class ComposeAdapter(PartsAdapter):
    answer_prefix = " "

    def __init__(self, name: str, source=None, device="cpu", dtype=None, local_files_only: bool = False,
                 cache_dir=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        spec = read_spec(source)
        self.name, self.spec = name, spec
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        backbones = [_load_backbone(b, spec.base, Path(cache_dir) if cache_dir else None) for b in spec.vision]
        sizes = {tuple(_crop_size(b.transform)) for b in backbones}
        if len(sizes) > 1:
            raise ModelLoadError(f"fused backbones must take the same image size; these take {sorted(sizes)}: set "
                                 "\"image_size\" on each.")
        llm_src = spec.llm
        local = _resolve(llm_src, spec.base)
        if local.exists() or llm_src.startswith((".", "/", "~")):
            if not local.is_dir():
                raise ModelLoadError(f"LLM folder {local} not found (\"llm\" in the spec; relative paths start at "
                                     f"{spec.base}).")
            llm_src = str(local)
        llm = load_pretrained(AutoModelForCausalLM, llm_src, local_files_only=local_files_only, dtype=self.dtype)
        self.tokenizer = load_pretrained(AutoTokenizer, llm_src, local_files_only=local_files_only)
        self.processor = None
        self.image_token_id = self._token_id(spec.image_token, "image_token")
        if spec.answer_end_token:
            self._token_id(spec.answer_end_token, "answer_end_token")
            self.tokenizer.eos_token = spec.answer_end_token

        in_dim = sum(b.width for b in backbones)
        out_dim = llm.get_input_embeddings().embedding_dim
        with torch.random.fork_rng(devices=[]):  # reproducible fresh projector; global RNG untouched
            torch.manual_seed(spec.projector_seed)
            projector, n_tokens = build_projector(spec.projector, in_dim, out_dim)
        self._load_projector(projector, in_dim, out_dim)
        kind = spec.projector if isinstance(spec.projector, str) else spec.projector.get("type")
        self.projector_family = FAMILIES[kind]
        self.model = ComposedModel(nn.ModuleList(backbones), projector, llm, self.image_token_id)
        self.model.to(self.device, self.dtype).eval()
        self.checkpoint = str(spec.base if Path(str(source)).expanduser().is_dir() else Path(str(source)).expanduser())
        self._crop = sizes.pop()
        if n_tokens is None:
            with torch.no_grad():
                probe = torch.zeros(1, 3 * len(backbones), *self._crop, device=self.device, dtype=self.dtype)
                n_tokens = self.model.image_features(probe).shape[1]
        self._num_image_tokens = n_tokens

    def _load_projector(self, projector: nn.Module, in_dim: int, out_dim: int) -> None:
        from safetensors.torch import load_file

        named = self.spec.projector_weights
        path = _resolve(named, self.spec.base) if named else self.spec.base / "projector.safetensors"
        if not path.is_file():
            if named:
                raise ModelLoadError(f"projector weights {named!r} not found (looked for {path}).")
            warnings.warn(f"{self.name}: no projector.safetensors next to the spec; using a random projector "
                          f"(seed {self.spec.projector_seed}). See docs/composing-models.md to bring a trained one.",
                          stacklevel=3)
            return
        state = load_file(str(path))
        state = {k.removeprefix("multi_modal_projector."): v for k, v in state.items()}
        own = projector.state_dict()
        if set(state) != set(own):
            raise ModelLoadError(f"{path} is not a {self.spec.projector!r} projector: keys {sorted(state)[:6]}, "
                                 f"expected {sorted(own)[:6]}.")
        bad = sorted(((k, tuple(v.shape), tuple(own[k].shape)) for k, v in state.items() if v.shape != own[k].shape),
                     key=lambda b: (not b[0].endswith("weight"), b[0]))  # a weight shows both widths
        if bad:
            raise ModelLoadError(
                f"{path} does not fit: the composition maps vision width {in_dim} to the LLM's hidden size "
                f"{out_dim}, but {bad[0][0]} has shape {bad[0][1]} (expected {bad[0][2]}). A projector's output "
                "width must equal the LLM's hidden size, and its input the backbones' (summed) width.")
        projector.load_state_dict(state)

    def _token_id(self, token: str, key: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or (tid == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token):
            raise ModelLoadError(f"{self.name}: the LLM's tokenizer has no token {token!r} ({key} in the spec); "
                                 "name a reserved or special token it has.")
        return tid

    # parts
    def language_decoder(self):
        lm = self.model.language_model
        dec = lm.get_decoder() if hasattr(lm, "get_decoder") else lm.model
        return getattr(dec, "decoder", dec)  # OPT keeps its blocks one level down

    # images
    def preprocess(self, images):
        # Each backbone's own transform; a fusion stacks them channel-wise (split again in image_features).
        px = torch.stack([torch.cat([b.transform(im) for b in self.model.vision_tower]) for im in images])
        return px.to(self.device, self.dtype)

    def preprocessing_signature(self):
        return {"vision": list(self.spec.vision), "transforms": [repr(b.transform) for b in self.model.vision_tower]}

    # text
    def format_prompt(self, question):
        return self.spec.template.format(bos=self.tokenizer.bos_token or "", image=self.spec.image_token,
                                         question=question)

    @property
    def image_token(self) -> str:
        return self.spec.image_token


def declared_clip(source) -> tuple[str, str | None] | None:
    """The CLIP matching a spec's vision encoder, for the baselines: its open_clip backbone, if it has just one."""
    try:
        spec = read_spec(source)
    except ModelLoadError:
        return None  # the run itself reports the bad spec
    if len(spec.vision) != 1 or spec.vision[0].get("library") != "open_clip":
        return None  # timm backbones and fusions have no single open_clip counterpart
    name = spec.vision[0].get("name", "")
    if name.startswith("local-dir:") and not Path(name[10:]).is_absolute():
        name = "local-dir:" + str(spec.base / name[10:])
    return name, spec.vision[0].get("pretrained")


def _crop_size(transform) -> tuple[int, int]:
    """The square size a torchvision eval transform produces (its CenterCrop's size)."""
    for t in getattr(transform, "transforms", []):
        if type(t).__name__ == "CenterCrop":
            s = t.size
            return (s, s) if isinstance(s, int) else tuple(s)
    for t in getattr(transform, "transforms", []):
        if type(t).__name__ == "Resize" and isinstance(t.size, list | tuple) and len(t.size) == 2:
            return tuple(t.size)
    raise ModelLoadError(f"cannot tell the image size of the backbone transform {transform}.")


# -- tiny twins ----------------------------------------------------------------------------------------------------
def _tiny_llm(kind: str, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**common))


TINY_VIT = {"img_size": 28, "patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _tiny_builder(vision: list[dict], projector, llm_kind: str):
    """A tiny composition written in the spec-folder layout a user would bring: config.json, weights, llm/."""

    def build(out: Path) -> None:
        import timm
        from safetensors.torch import save_file

        torch.manual_seed(0)
        spec_vision = []
        for i, b in enumerate(vision):
            b = dict(b)
            if b["library"] == "timm":
                trunk = timm.create_model(b["name"], pretrained=False, num_classes=0, **b.get("kwargs", {}))
                b["weights"] = f"vision/{i}.safetensors"
                (out / "vision").mkdir(exist_ok=True)
                save_file({k: v.contiguous() for k, v in trunk.state_dict().items()}, str(out / b["weights"]))
            else:
                from benchmark.baselines import build_tiny_clip

                (out / "vision" / str(i)).mkdir(parents=True)
                build_tiny_clip(b.pop("tiny"), out / "vision" / str(i))
                b["name"] = f"local-dir:vision/{i}"
            spec_vision.append(b)
        tokenizer = build_tokenizer()
        llm = _tiny_llm(llm_kind, tokenizer)
        llm.save_pretrained(out / "llm")
        tokenizer.save_pretrained(out / "llm")
        spec = {"model_type": "projbench-compose", "vision": spec_vision, "projector": projector, "llm": "llm",
                "template": DEFAULT_TEMPLATE, "image_token": "<image>"}
        (out / SPEC_FILE).write_text(json.dumps(spec, indent=2) + "\n")
        # The projector as a user brings it: a safetensors state dict next to the spec.
        width = sum(TINY_VIT["embed_dim"] if b["library"] == "timm" else 32 for b in spec_vision)
        projector_module, _ = build_projector(projector, width, 64)
        save_file({k: v.contiguous() for k, v in projector_module.state_dict().items()},
                  str(out / "projector.safetensors"))

    return build


# Prismatic's "DINOv2 + SigLIP" fusion with LLaVA's MLP, on a Llama LM; and an open_clip CLIP with a Q-Former-style
# query transformer on a Qwen2 LM.
_TINY_DINOSIGLIP = [{"library": "timm", "name": "vit_small_patch14_dinov2", "kwargs": TINY_VIT},
                    {"library": "timm", "name": "vit_base_patch16_siglip_224", "kwargs": TINY_VIT}]
_TINY_CLIP_QFORMER = [{"library": "open_clip", "tiny": TINY_CLIP[0]}]
_QFORMER = {"type": "qformer", "num_queries": 8, "depth": 1, "heads": 2, "width": 32}
build_tiny_dinosiglip_mlp = _tiny_builder(_TINY_DINOSIGLIP, "mlp2x_gelu", "llama")
build_tiny_clip_qformer = _tiny_builder(_TINY_CLIP_QFORMER, _QFORMER, "qwen2")

# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.COMPOSE
