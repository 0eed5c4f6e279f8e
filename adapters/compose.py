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

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from benchmark.backbones import LOCAL_DIR, build_tiny_clip, crop_size, load_backbone, resolve_path
from benchmark.errors import ModelLoadError

from . import catalog, projectors
from .loading import load_pretrained, resolve_dtype
from .parts import PartsAdapter, PartsModel
from .projectors import build_projector  # noqa: F401  (re-exported: its former home)
from .spec import TINY_CLIP
from .tiny import build_tokenizer

SPEC_FILE = "config.json"
DEFAULT_TEMPLATE = "{bos}{image}\nUSER: {question}\nASSISTANT:"
PROJECTORS = tuple(projectors.REGISTRY)  # the projector kinds a spec may name (adapters/projectors.py)
FAMILIES = {name: kind.family for name, kind in projectors.REGISTRY.items()}
_SPEC_KEYS = {"vision", "projector", "llm", "template", "image_token", "answer_end_token", "projector_seed",
              "projector_weights", "model_type", "description"}


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

    def __init__(self, name: str, source=None, device="cpu", dtype=None, local_files_only: bool = False, *,
                 cache_dir=None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        spec = read_spec(source)
        self.name, self.spec = name, spec
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        backbones = [load_backbone(b, spec.base, Path(cache_dir) if cache_dir else None) for b in spec.vision]
        sizes = {tuple(crop_size(b.transform)) for b in backbones}
        if len(sizes) > 1:
            raise ModelLoadError(f"fused backbones must take the same image size; these take {sorted(sizes)}: set "
                                 "\"image_size\" on each.")
        llm_src = spec.llm
        local = resolve_path(llm_src, spec.base)
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
            projector, n_tokens = projectors.build_projector(spec.projector, in_dim, out_dim)
        self._load_projector(projector, in_dim, out_dim)
        self.projector_family = projectors.family(spec.projector)
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
        path = resolve_path(named, self.spec.base) if named else self.spec.base / "projector.safetensors"
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
    if name.startswith(LOCAL_DIR) and not Path(name[len(LOCAL_DIR):]).is_absolute():
        name = LOCAL_DIR + str(spec.base / name[len(LOCAL_DIR):])
    return name, spec.vision[0].get("pretrained")


# -- tiny twins ----------------------------------------------------------------------------------------------------
def _tiny_llm(kind: str, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    common = dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                  pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    return LlamaForCausalLM(LlamaConfig(**common)) if kind == "llama" else Qwen2ForCausalLM(Qwen2Config(**common))


TINY_VIT = {"img_size": 28, "patch_size": 7, "embed_dim": 32, "depth": 2, "num_heads": 2}


def _build_tiny(out: Path, vision: list[dict], projector, llm_kind: str) -> None:
    """A tiny composition written in the spec-folder layout a user would bring: config.json, weights, llm/."""
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
    projector_module, _ = projectors.build_projector(projector, width, 64)
    save_file({k: v.contiguous() for k, v in projector_module.state_dict().items()},
              str(out / "projector.safetensors"))


# Prismatic's "DINOv2 + SigLIP" fusion with LLaVA's MLP, on a Llama LM; and an open_clip CLIP with a Q-Former-style
# query transformer on a Qwen2 LM.
_TINY_DINOSIGLIP = [{"library": "timm", "name": "vit_small_patch14_dinov2", "kwargs": TINY_VIT},
                    {"library": "timm", "name": "vit_base_patch16_siglip_224", "kwargs": TINY_VIT}]
_TINY_CLIP_QFORMER = [{"library": "open_clip", "tiny": TINY_CLIP[0]}]
_QFORMER = {"type": "qformer", "num_queries": 8, "depth": 1, "heads": 2, "width": 32}


# Plain functions, so that their key is read from this file without importing it (adapters.tiny.build_hash).
def build_tiny_dinosiglip_mlp(out: Path) -> None:
    _build_tiny(out, _TINY_DINOSIGLIP, "mlp2x_gelu", "llama")


def build_tiny_clip_qformer(out: Path) -> None:
    _build_tiny(out, _TINY_CLIP_QFORMER, _QFORMER, "qwen2")


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.COMPOSE
