"""LiMBeR / Venhoff-style model built from parts: CLIP ViT-L/14 -> one linear layer -> Gemma-2-2B-it.

LiMBeR (Merullo et al., ICLR 2023) and Venhoff et al. (2025, github.com/cvenhoff/vlm-mapping) connect a
frozen vision encoder to a frozen LLM with a single trained linear map. No transformers class exists for it,
so :class:`LimberModel` composes the real ones: ``vision_tower`` (``CLIPVisionModel``),
``multi_modal_projector`` (``nn.Linear``, the projector) and ``language_model`` (``Gemma2ForCausalLM``). Its
forward embeds the prompt with Gemma's own embedding layer, writes the projected image tokens over the image
placeholders and calls the unmodified Gemma-2 forward with ``inputs_embeds``.

Defaults follow Venhoff et al.: vision features are CLIP's last hidden state without CLS (256 tokens at
224 px); the image tokens come right after ``<bos>``, followed by one Gemma chat turn; the answer ends with
``<end_of_turn>``::

    <bos>[image tokens]<start_of_turn>user\\n{question}<end_of_turn>\\n<start_of_turn>model\\n{answer}<end_of_turn>

The placeholder ids (``<unused0>`` by default) never reach the LLM: their embeddings are replaced.

Where the parts come from (``--model-path``, i.e. the factory's ``source``):

* nothing: ``openai/clip-vit-large-patch14`` and ``google/gemma-2-2b-it`` from the hub or the local HF cache,
  and a fresh projector (seeded random init, flagged in ``checkpoint``: zero-shot numbers are then
  meaningless, FT-Proj trains it from scratch);
* a projector file (``.safetensors``, or a ``.pth``/``.pt`` state dict such as Venhoff's released
  ``projector_gemma-2-2b-it_finetune.pth``, or a run's ``projector.safetensors``): that projector, with the
  default parts;
* a directory ``DIR`` holding any of ``vision/`` (``CLIPVisionModel`` + image processor, ``save_pretrained``
  layout), ``llm/`` (``Gemma2ForCausalLM`` + tokenizer), ``projector.safetensors`` (or ``projector.pth``) and
  ``config.json``. Missing parts fall back to the defaults above. ``config.json`` may override any key of
  :data:`DEFAULTS`; ``vision``, ``llm`` and ``projector`` there are paths relative to ``DIR``, absolute paths
  or hub ids, so large parts can stay where they are.

If a part cannot be loaded, the error names the part and where to put a local copy.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch import nn

from benchmark.errors import ModelLoadError
from benchmark.storage.hub import download_command

from . import catalog
from .loading import load_pretrained, resolve_dtype
from .parts import PartsAdapter, PartsModel
from .tiny import build_tokenizer

GEMMA_TEMPLATE = "{bos}{image}<start_of_turn>user\n{question}<end_of_turn>\n<start_of_turn>model\n"

DEFAULTS = {
    "vision": "openai/clip-vit-large-patch14",
    "llm": "google/gemma-2-2b-it",
    "projector": None,                  # None: seeded random init
    "vision_feature_layer": -1,         # CLIP hidden state fed to the projector (Venhoff: last)
    "drop_cls": True,                   # patch tokens only (Venhoff: last_hidden_state[:, 1:])
    "image_token": "<unused0>",         # placeholder id in the prompt; overwritten by the image tokens
    "answer_end_token": "<end_of_turn>",  # what ends the model's turn in Gemma's chat format
    "template": GEMMA_TEMPLATE,
    "projector_seed": 0,
}
PROJECTOR_FILES = ("projector.safetensors", "projector.pth", "projector.pt")


class LimberModel(PartsModel):
    """Frozen CLIP vision tower + linear projector + Gemma-2 causal LM, wired through Gemma's own forward."""

    def __init__(self, vision_tower: nn.Module, multi_modal_projector: nn.Linear, language_model: nn.Module,
                 image_token_id: int, *, vision_feature_layer: int = -1, drop_cls: bool = True):
        super().__init__(vision_tower, multi_modal_projector, language_model, image_token_id)
        self.vision_feature_layer = vision_feature_layer
        self.drop_cls = drop_cls

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.vision_tower(pixel_values, output_hidden_states=True, return_dict=True)
        h = out.hidden_states[self.vision_feature_layer]
        return h[:, 1:] if self.drop_cls else h

    def save_parts(self, out: Path, settings: dict) -> None:
        """Write the directory layout this adapter loads: vision/, llm/, projector.safetensors, config.json."""
        from safetensors.torch import save_file

        out = Path(out)
        self.vision_tower.save_pretrained(out / "vision")
        self.language_model.save_pretrained(out / "llm")
        state = {k: v.detach().cpu().contiguous() for k, v in self.multi_modal_projector.state_dict().items()}
        save_file(state, str(out / "projector.safetensors"))
        # The parts sit where the loader looks by default, so the manifest holds only the settings.
        (out / "config.json").write_text(json.dumps(settings, indent=2) + "\n")


def read_projector_file(path: Path) -> dict[str, torch.Tensor]:
    """``weight``/``bias`` of a saved linear layer, from safetensors or a torch state dict, any key prefix."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # Keys may carry a wrapper's prefix ("module." from DDP, "multi_modal_projector." from a full state dict).
    out = {k.rsplit(".", 1)[-1]: v for k, v in state.items() if k.rsplit(".", 1)[-1] in ("weight", "bias")}
    if "weight" not in out or len([k for k in state if k.endswith("weight")]) != 1:
        raise ModelLoadError(f"{path} is not the state dict of one linear layer (keys: {sorted(state)[:6]}).")
    return out


class LimberAdapter(PartsAdapter):
    projector_family = "linear"
    answer_prefix = ""  # the answer starts right after "<start_of_turn>model\n"

    def __init__(self, name: str, source=None, device="cpu", dtype=None, local_files_only: bool = False):
        from transformers import AutoTokenizer, CLIPImageProcessor, CLIPVisionModel, Gemma2ForCausalLM

        self.name = name
        self.device = torch.device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        settings, parts = resolve_sources(source)
        self.settings = settings
        vision = self._load_part("vision", CLIPVisionModel, parts["vision"], local_files_only, dtype=self.dtype)
        self.image_processor = self._load_part("vision", CLIPImageProcessor, parts["vision"], local_files_only)
        llm = self._load_part("llm", Gemma2ForCausalLM, parts["llm"], local_files_only, dtype=self.dtype)
        self.tokenizer = self._load_part("llm", AutoTokenizer, parts["llm"], local_files_only)
        self.processor = self.image_processor  # there is no joint processor; images are all it handles

        self.image_token = settings["image_token"]
        self.image_token_id = self._token_id(self.image_token, "image_token")
        # The chat model ends its turn with <end_of_turn>, not <eos>: that is the answer's end here, so the
        # benchmark's "answer + EOS" supervises and scores what the model really emits.
        self._token_id(settings["answer_end_token"], "answer_end_token")
        self.tokenizer.eos_token = settings["answer_end_token"]
        self._template = settings["template"]

        with torch.random.fork_rng(devices=[]):  # a fresh projector is reproducible; global RNG untouched
            torch.manual_seed(settings["projector_seed"])
            projector = nn.Linear(vision.config.hidden_size, llm.config.hidden_size, dtype=self.dtype)
        if parts["projector"] is not None:
            state = read_projector_file(parts["projector"])
            try:
                projector.load_state_dict({k: v.to(self.dtype) for k, v in state.items()})
            except RuntimeError as exc:
                raise ModelLoadError(
                    f"Projector {parts['projector']} does not fit CLIP width {vision.config.hidden_size} -> "
                    f"Gemma width {llm.config.hidden_size}: {exc}"
                ) from exc
        else:
            warnings.warn(f"{name}: no trained projector given; using a random linear projector "
                          f"(seed {settings['projector_seed']}). See the module docstring of "
                          "benchmark.adapters.limber for how to load one.", stacklevel=2)
        self.checkpoint = describe_checkpoint(source, parts, settings)
        self.model = LimberModel(vision, projector, llm, self.image_token_id,
                                 vision_feature_layer=settings["vision_feature_layer"],
                                 drop_cls=settings["drop_cls"]).to(self.device)
        self.model.eval()
        cfg = vision.config
        self._num_image_tokens = (cfg.image_size // cfg.patch_size) ** 2 + (0 if settings["drop_cls"] else 1)

    def _load_part(self, part, cls, src, local_files_only, **kwargs):
        try:
            return load_pretrained(cls, src, local_files_only=local_files_only, **kwargs)
        except ModelLoadError as exc:
            # Keep the cause, replace the generic fix: --model-path names the parts directory here.
            cause = str(exc).split("\nFix:")[0]
            raise ModelLoadError(
                f"{self.name}: could not load the {part} part ({cls.__name__}) from {src!r}.\n{cause}\n"
                f"Fix: put a local copy at DIR/{part}/ (e.g. `{download_command(DEFAULTS[part], local_dir=f'DIR/{part}')}` "
                f"where the hub is reachable) and pass `--model-path DIR`; DIR may also "
                f"hold llm/, vision/ and projector.safetensors, or name the part's path under \"{part}\" in "
                f"DIR/config.json. `--model {self.name.removesuffix('-tiny')}-tiny` runs offline."
            ) from exc

    def _token_id(self, token: str, key: str) -> int:
        tid = self.tokenizer.convert_tokens_to_ids(token)
        if tid is None or (tid == self.tokenizer.unk_token_id and token != self.tokenizer.unk_token):
            raise ModelLoadError(f"{self.name}: the tokenizer has no token {token!r} ({key} in config.json).")
        return tid

    # parts
    def language_decoder(self):
        return self.model.language_model.model

    # images
    def preprocess(self, images):
        px = self.image_processor(images=images, return_tensors="pt")["pixel_values"]
        return px.to(self.device, self.dtype)

    def preprocessing_signature(self):
        return {"image_processor": self.image_processor.to_dict(),
                "vision_feature_layer": self.settings["vision_feature_layer"], "drop_cls": self.settings["drop_cls"]}

    # text
    def format_prompt(self, question):
        return self._template.format(bos=self.tokenizer.bos_token, image=self.image_token, question=question)


def resolve_sources(source) -> tuple[dict, dict]:
    """(settings, part sources) for a ``--model-path``: nothing, a projector file, or a parts directory."""
    settings = dict(DEFAULTS)
    parts = {"vision": DEFAULTS["vision"], "llm": DEFAULTS["llm"], "projector": None}
    if source is None:
        return settings, parts
    path = Path(str(source)).expanduser()
    if path.is_file():
        parts["projector"] = path
        return settings, parts
    if not path.is_dir():
        raise ModelLoadError(f"--model-path {source!r} is neither a projector file nor a directory of parts "
                             "(vision/, llm/, projector.safetensors, config.json).")
    manifest, given = path / "config.json", {}
    if manifest.exists():
        given = json.loads(manifest.read_text())
        unknown = sorted(set(given) - set(DEFAULTS) - {"model_type"})
        if unknown:
            raise ModelLoadError(f"{manifest}: unknown key(s) {unknown}; known: {sorted(DEFAULTS)}.")
        settings.update(given)
    for part in ("vision", "llm"):
        # A named part is relative to DIR, absolute, or a hub id; an unnamed one is DIR/<part> if present.
        local = path / given.get(part, part)
        parts[part] = str(local) if local.exists() else settings[part]
    candidates = [given["projector"]] if given.get("projector") else list(PROJECTOR_FILES)
    found = [path / c for c in candidates if (path / c).is_file()]
    if found:
        parts["projector"] = found[0]
    elif given.get("projector"):
        raise ModelLoadError(f"{manifest}: projector file {given['projector']!r} not found.")
    return settings, parts


def describe_checkpoint(source, parts: dict, settings: dict) -> str:
    """A directory is its own identity (the feature cache hashes it); otherwise spell out the parts."""
    if source is not None and Path(str(source)).expanduser().is_dir():
        return str(Path(str(source)).expanduser())
    proj = str(parts["projector"]) if parts["projector"] else f"untrained(seed {settings['projector_seed']})"
    return f"vision={parts['vision']};projector={proj};llm={parts['llm']}"


# ---------------------------------------------------------------------------------------------------------
# Tiny twin: CLIPVisionModel + nn.Linear + Gemma2ForCausalLM with tiny configs, seeded, saved part by part.


def build_tiny_limber(out: Path) -> None:
    from transformers import (
        CLIPImageProcessor,
        CLIPVisionConfig,
        CLIPVisionModel,
        Gemma2Config,
        Gemma2ForCausalLM,
    )

    tokenizer = build_tokenizer(extra_special=("<image>", "<start_of_turn>", "<end_of_turn>"))
    image_size, patch = 28, 7
    vision_cfg = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        image_size=image_size, patch_size=patch, projection_dim=32,
    )
    llm_cfg = Gemma2Config(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=16,
        # Real Gemma-2 alternates sliding (4096) and full layers; the window here also exceeds any tiny
        # sequence, as the real one exceeds the benchmark's prompts.
        sliding_window=512, max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    vision = CLIPVisionModel(vision_cfg)
    llm = Gemma2ForCausalLM(llm_cfg)
    projector = nn.Linear(vision_cfg.hidden_size, llm_cfg.hidden_size)
    settings = {"image_token": "<image>", "answer_end_token": "<end_of_turn>", "vision_feature_layer": -1,
                "drop_cls": True}
    model = LimberModel(vision, projector, llm, tokenizer.convert_tokens_to_ids("<image>"))
    model.save_parts(out, settings)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        do_center_crop=True, do_resize=True,
    ).save_pretrained(out / "vision")
    tokenizer.save_pretrained(out / "llm")


# The registry entries of this family live in catalog.py (importable without torch); kept here for callers.
ADAPTERS = catalog.LIMBER
load_limber_tiny = {s.name: s for s in ADAPTERS}["limber-gemma2-tiny"].factory
