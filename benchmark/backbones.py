"""Vision backbones in one place: open_clip CLIPs (for the CLIP baselines and composed models) and timm ViTs.

* :func:`load_clip` loads an open_clip model by name and tag, a ``local-dir:`` copy, or a seeded tiny twin
  (``tiny-clip``) built into the cache, with one clear error when the weights are not reachable offline;
* :func:`load_backbone` builds one frozen feature extractor for a composed model (``adapters/compose.py``) from a
  spec entry: a timm model or an open_clip tower, giving the hidden states of one block.

``benchmark/baselines.py`` and ``benchmark/adapters/compose.py`` both load through here.
"""

from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .errors import ModelLoadError

LOCAL_DIR = "local-dir:"
BACKBONE_KEYS = {"library", "name", "pretrained", "weights", "layer", "image_size", "kwargs"}


# -- which CLIP ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClipChoice:
    """The CLIP used for the baselines, and whether it is the one the adapter declares for its vision encoder."""

    model: str                       # open_clip model name, a tiny twin's name, or "local-dir:DIR"
    pretrained: str | None           # open_clip pretrained tag or weight file; None for local-dir / tiny twins
    declared: tuple[str, str | None] | None   # what the adapter declares (AdapterSpec.clip)
    warning: str | None = None       # set when the CLIP does not match the adapter's encoder

    @property
    def label(self) -> str:
        return self.model + (f"/{self.pretrained}" if self.pretrained else "")

    def to_dict(self) -> dict:
        return {"model": self.model, "pretrained": self.pretrained,
                "declared": list(self.declared) if self.declared else None,
                "matches_adapter": self.warning is None, "warning": self.warning}


# -- tiny CLIP twins (offline tests and demos) ---------------------------------------------------------------------
TINY_TEXT = {"context_length": 32, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}
TINY_CLIPS = {
    # open_clip's own CLIP class with tiny configs; built seeded into the cache and loaded as "local-dir:".
    "tiny-clip": {"embed_dim": 24, "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8,
                                                  "head_width": 16}, "text_cfg": TINY_TEXT},
    "tiny-clip-b": {"embed_dim": 16, "vision_cfg": {"image_size": 28, "layers": 1, "width": 24, "patch_size": 7,
                                                    "head_width": 12}, "text_cfg": TINY_TEXT},
}
OPENAI_MEAN_STD = {"mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711]}


def build_tiny_clip(name: str, out: Path) -> None:
    """Write a seeded random-init open_clip CLIP in open_clip's ``local-dir`` layout (config + safetensors)."""
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    cfg = TINY_CLIPS[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CLIP(**cfg)
    manifest = {"model_cfg": cfg, "preprocess_cfg": OPENAI_MEAN_STD}
    (out / "open_clip_config.json").write_text(json.dumps(manifest, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "open_clip_model.safetensors"))


def tiny_clip_dir(name: str, cache_dir: Path) -> Path:
    """``cache_dir/tiny/<name>-clip<hash of its config>``, built atomically on first use."""
    import os
    import shutil
    import tempfile

    digest = hashlib.sha256(json.dumps(TINY_CLIPS[name], sort_keys=True).encode()).hexdigest()[:10]
    target = Path(cache_dir) / "tiny" / f"{name}-{digest}"
    if (target / "open_clip_model.safetensors").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build_tiny_clip(name, tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first
            if not (target / "open_clip_model.safetensors").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


# -- loading a CLIP -----------------------------------------------------------------------------------------------
@dataclass
class LoadedClip:
    model: torch.nn.Module
    preprocess: object
    tokenizer: object
    identity: dict          # what identifies the weights (for the feature cache and the results)


def _clip_identity(choice: ClipChoice, path: Path | None) -> dict:
    """Name, tag and, for local weights, a hash of their content: the MLLM features' ``local_revision``, so that
    weights replaced by others of the same size and modification time give another identity (and cache key)."""
    from benchmark.storage.features import local_revision

    ident = {"model": choice.model, "pretrained": choice.pretrained}
    if path is not None and path.exists():
        ident["content"] = local_revision(path)["content_hash"]
    return ident


def load_clip(choice: ClipChoice, cache_dir: Path, device: str = "cpu") -> LoadedClip:
    """An open_clip model, its eval preprocessing and tokenizer; offline problems become one clear error."""
    import open_clip

    name, tag = choice.model, choice.pretrained
    if name in TINY_CLIPS:
        path = tiny_clip_dir(name, cache_dir)
        name, tag = LOCAL_DIR + str(path), None
    elif name.startswith(LOCAL_DIR):
        path = Path(name[len(LOCAL_DIR):]).expanduser()
        if not (path / "open_clip_config.json").is_file():
            raise ModelLoadError(f"--clip-model {choice.model!r}: {path} has no open_clip_config.json (open_clip's "
                                 "local-dir layout: open_clip_config.json + open_clip_model.safetensors).")
        name = LOCAL_DIR + str(path)
    else:
        path = _check_named_clip(name, tag)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=str(path) if path is not None and path.is_file() else tag, device=device)
        tokenizer = open_clip.get_tokenizer(name)
    except (RuntimeError, OSError, ValueError) as exc:
        raise ModelLoadError(f"Could not load CLIP {choice.label} with open_clip: {exc}") from exc
    model.eval()
    return LoadedClip(model, preprocess, tokenizer, _clip_identity(choice, path))


def _check_named_clip(name: str, tag: str | None) -> Path | None:
    """Validate a built-in open_clip name and tag; the local weight file if the tag is a path or is cached."""
    import open_clip

    known = open_clip.list_models()
    if name not in known:
        close = difflib.get_close_matches(name, known + list(TINY_CLIPS), n=3, cutoff=0.5)
        raise ModelLoadError(
            f"Unknown CLIP model {name!r} for open_clip." + (f" Did you mean {', '.join(map(repr, close))}?" if close
                                                             else "")
            + " `python -c 'import open_clip; print(open_clip.list_models())'` lists them; a local copy is "
            "--clip-model local-dir:DIR.")
    if tag is None:
        raise ModelLoadError(f"--clip-model {name} needs --clip-pretrained: a tag (one of "
                             f"{open_clip.list_pretrained_tags_by_model(name)}) or a weight file.")
    if Path(tag).expanduser().is_file():
        return Path(tag).expanduser()
    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        close = difflib.get_close_matches(tag, tags, n=3, cutoff=0.4)
        raise ModelLoadError(f"open_clip has no pretrained tag {tag!r} for {name}." +
                             (f" Did you mean {', '.join(map(repr, close))}?" if close else "") +
                             f" Its tags: {tags}; or pass a weight file.")
    repo = cfg.get("hf_hub", "").rstrip("/")
    if repo:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            cached = try_to_load_from_cache(repo, filename)
            if isinstance(cached, str):
                return Path(cached)
    from benchmark.storage.hub import download_command, hub_reachable

    if not hub_reachable():
        fetch = (f"`{download_command(repo, 'open_clip_model.safetensors')}`" if repo
                 else f"{cfg.get('url')}")
        raise ModelLoadError(
            f"CLIP {name}/{tag} is not in the local Hugging Face cache and the hub is not reachable. Fetch "
            f"{fetch} where it is, then pass --clip-model {name} --clip-pretrained DIR/open_clip_model.safetensors.")
    return None


# -- vision backbones of composed models --------------------------------------------------------------------------
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


def load_backbone(b: dict, base: Path, cache_dir: Path | None) -> Backbone:
    """One entry of a composed model's ``vision`` list; relative paths in it start at ``base`` (the spec's folder)."""
    unknown = set(b) - BACKBONE_KEYS
    if unknown:
        raise ModelLoadError(f"vision backbone {b.get('name')!r}: unknown key(s) {sorted(unknown)}; known: "
                             f"{sorted(BACKBONE_KEYS)}.")
    lib, name = b.get("library"), b.get("name")
    if lib not in ("timm", "open_clip") or not name:
        raise ModelLoadError(f"each vision backbone needs \"library\": \"timm\" or \"open_clip\" and a \"name\"; "
                             f"got {b}.")
    if lib == "timm":
        trunk, kind, transform, width = _timm_trunk(b, name)
    else:
        trunk, kind, transform, width = _open_clip_trunk(b, name, base, cache_dir)
    if b.get("weights"):
        _load_weights(trunk, resolve_path(b["weights"], base), f"{lib} model {name!r}", b["weights"])
    return Backbone(trunk, kind, int(b.get("layer", -2)), transform, width)


def _timm_trunk(b: dict, name: str):
    """(trunk, "timm", eval transform, width) of a timm model named in a spec."""
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
    return trunk, "timm", timm.data.create_transform(**cfg), trunk.embed_dim


def _open_clip_trunk(b: dict, name: str, base: Path, cache_dir: Path | None):
    """(trunk, kind, eval transform, width) of an open_clip model's image tower named in a spec."""
    if name.startswith(LOCAL_DIR) and not Path(name[len(LOCAL_DIR):]).is_absolute():
        name = LOCAL_DIR + str(base / name[len(LOCAL_DIR):])
    clip = load_clip(ClipChoice(name, b.get("pretrained"), None), cache_dir or base)
    visual = clip.model.visual
    if hasattr(visual, "trunk"):  # a timm tower inside open_clip (SigLIP): use it as a timm backbone
        return visual.trunk, "timm", clip.preprocess, visual.trunk.embed_dim
    return visual, "open_clip", clip.preprocess, visual.transformer.width


def _load_weights(trunk: nn.Module, path: Path, what: str, named: str) -> None:
    from safetensors.torch import load_file

    if not path.is_file():
        raise ModelLoadError(f"vision weights {named!r} not found (looked for {path}).")
    missing = trunk.load_state_dict(load_file(str(path)), strict=False)
    if missing.missing_keys or missing.unexpected_keys:
        raise ModelLoadError(f"{path} does not fit {what}: missing {missing.missing_keys[:4]}, "
                             f"unexpected {missing.unexpected_keys[:4]}.")


def _check_timm_weights(name: str) -> None:
    """Offline: fail in seconds, naming the hub repo to fetch, instead of timm's retries."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    from benchmark.storage.hub import download_command, hub_reachable

    repo = timm.models.get_pretrained_cfg(name).hf_hub_id if timm.models.get_pretrained_cfg(name) else None
    if repo and isinstance(try_to_load_from_cache(repo, "model.safetensors"), str):
        return
    if not hub_reachable():
        raise ModelLoadError(
            f"timm weights of {name!r} are not in the local Hugging Face cache and the hub is not reachable. Fetch "
            f"`{download_command(str(repo), 'model.safetensors')}` where it is, then set "
            "\"weights\": \"DIR/model.safetensors\" (and \"pretrained\": false) for this backbone in the spec.")


def resolve_path(p: str, base: Path) -> Path:
    """``p`` as written in a spec: absolute, or relative to the spec's folder ``base``."""
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


def crop_size(transform) -> tuple[int, int]:
    """The square size a torchvision eval transform produces (its CenterCrop's size)."""
    for t in getattr(transform, "transforms", []):
        if type(t).__name__ == "CenterCrop":
            s = t.size
            return (s, s) if isinstance(s, int) else tuple(s)
    for t in getattr(transform, "transforms", []):
        if type(t).__name__ == "Resize" and isinstance(t.size, list | tuple) and len(t.size) == 2:
            return tuple(t.size)
    raise ModelLoadError(f"cannot tell the image size of the backbone transform {transform}.")
