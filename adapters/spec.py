"""What a registry holds about a model: plain data, importable without torch.

An :class:`AdapterSpec` names a model, its checkpoint and projector family, and says how to build it. Its
``factory`` (and ``architecture``, and a callable ``clip``) may be a :class:`Ref`, a ``"module:attribute"``
reference imported only when it is called, so that listing the registry (``python -m benchmark list models``)
never imports torch or transformers.

A model family registers its checkpoints and its tiny twins in one declaration::

    ADAPTERS = model_family(
        "my_plugin.adapter:MyAdapter", projector_family="mlp", projector_modules="model.multi_modal_projector",
        checkpoints=[Checkpoint("mymodel", "org/mymodel-7b", "MyModel-7B: ...")],
        twins=[TinyTwin("mymodel-tiny", "my_plugin.adapter:build_tiny", "Tiny twin of mymodel")],
    )
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.errors import ModelLoadError
from benchmark.refs import Ref, resolve

# The tiny open_clip twin (benchmark/backbones.py) that tiny adapters declare, so their baselines run offline.
TINY_CLIP = ("tiny-clip", None)

# The projector families a spec may name (the leaderboard groups and compares models by them), with what each
# is. A family projbench does not list yet is added with register_projector_family() before its specs are made.
PROJECTOR_FAMILIES: dict[str, str] = {
    "linear": "one linear layer (LiMBeR, PaliGemma)",
    "mlp": "a small MLP, e.g. linear-GELU-linear (LLaVA-1.5)",
    "pooled-linear": "pooling, a norm, then one linear map (Gemma 3)",
    "pixel-shuffle": "a pixel shuffle folding s x s patches into one token, then a linear layer (Idefics3, SmolVLM)",
    "pixel-shuffle-mlp": "a pixel shuffle, then a LayerNorm-MLP (InternVL)",
    "patch-merger": "a norm and 2x2 patch concatenation, then an MLP (Qwen2-VL)",
    "q-former": "learned queries cross-attending to the image (BLIP-2, InstructBLIP)",
    "resampler": "a Perceiver-style resampler of learned latents (Flamingo, Idefics2)",
    "composed": "chosen by a composed model's spec (compose)",
}


def register_projector_family(name: str, description: str) -> None:
    """Add a projector family to :data:`PROJECTOR_FAMILIES` (for a genuinely new kind of projector)."""
    PROJECTOR_FAMILIES.setdefault(name, description)


def check_projector_family(family: str, model: str = "") -> str:
    """``family`` if it is a known projector family; else a one-line error naming the closest known one."""
    import difflib

    if family in PROJECTOR_FAMILIES:
        return family
    close = difflib.get_close_matches(family, PROJECTOR_FAMILIES, n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    from benchmark.errors import BenchmarkError

    raise BenchmarkError(
        f"{model or 'AdapterSpec'}: unknown projector_family {family!r}; {hint}known: {', '.join(PROJECTOR_FAMILIES)} "
        "(a new kind of projector: benchmark.adapters.spec.register_projector_family(name, description) first)")


def _ref(obj):
    """Strings become :class:`Ref` (callable, lazy); anything else is kept as it is."""
    return Ref(obj) if isinstance(obj, str) else obj


@dataclass(frozen=True)
class AdapterSpec:
    """A registry entry: how to build an adapter, and what it is, for `list models`."""

    name: str                       # CLI name, e.g. "llava15"
    # factory(source=None, device="cpu", dtype=None, cache_dir=None, local_files_only=False) -> ModelAdapter;
    # a Ref or "module:function" string is imported when called.
    factory: Callable[..., Any]
    checkpoint: str                 # hub id or description of the default checkpoint
    projector_family: str           # one of PROJECTOR_FAMILIES ("mlp", "linear", "q-former", "pixel-shuffle", ...)
    projector_modules: str          # what counts as the projector, in the model's own attribute names
    description: str = ""
    tiny: bool = False              # a tiny random-init twin for tests and the demo
    # The open_clip (model, pretrained tag) matching the vision encoder, for the CLIP baselines; None if no CLIP
    # matches (the baselines then fall back to the paper's CLIP, with a recorded warning). A callable gets the
    # --model-path and returns the same, for adapters whose encoder depends on what they load (compose).
    clip: tuple[str, str | None] | Callable[[str | None], tuple[str, str | None] | None] | None = None
    # The real architecture without weights, for `plan` (memory, FLOPs): a zero-argument callable returning an
    # :class:`~benchmark.adapters.base.Architecture`; None if the adapter ships no config (`plan` then needs
    # --model-path).
    architecture: Callable[[], Any] | None = None
    origin: str = "builtin"         # filled in by the registry: the plugin that registered it

    def __post_init__(self):
        check_projector_family(self.projector_family, self.name)
        for name in ("factory", "architecture"):
            object.__setattr__(self, name, _ref(getattr(self, name)))
        if not isinstance(self.clip, tuple):
            object.__setattr__(self, "clip", _ref(self.clip))


@dataclass(frozen=True, eq=False)
class HubFactory:
    """``factory(source=None, ...)`` loading ``source`` (a local dir or hub id), else ``default_source``."""

    adapter: Any                     # the adapter class, or a "module:Class" reference
    name: str
    default_source: str | None
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "adapter", _ref(self.adapter))

    def __call__(self, source=None, device="cpu", dtype=None, cache_dir=None, local_files_only=False, **kwargs):
        return resolve(self.adapter)(self.name, source or self.default_source, device=device, dtype=dtype,
                                     local_files_only=local_files_only, **{**self.options, **kwargs})


@dataclass(frozen=True, eq=False)
class TinyFactory:
    """``factory(...)`` loading the tiny twin ``name``, built once by ``build`` into the cache, in fp32 by default."""

    adapter: Any                     # the adapter class, or a "module:Class" reference
    name: str
    build: Any                       # build(directory) writes the twin; or a "module:function" reference
    options: dict = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "adapter", _ref(self.adapter))
        object.__setattr__(self, "build", _ref(self.build))

    def folder(self, cache_dir=None) -> Path:
        """The twin's checkpoint folder in the cache (``cache_dir``, else projbench's), built first if absent."""
        from benchmark.storage.paths import cache_root

        from .tiny import materialise

        return materialise(Path(cache_dir) if cache_dir else cache_root(), self.name, resolve(self.build))

    def __call__(self, source=None, device="cpu", dtype=None, cache_dir=None, local_files_only=False, **kwargs):
        path = source or self.folder(cache_dir)
        try:
            return resolve(self.adapter)(self.name, path, device=device, dtype=dtype or "float32",
                                         local_files_only=True, **{**self.options, **kwargs})
        except Exception as exc:
            damage = None if source else twin_damage(Path(path))
            if damage is None:  # the twin's files are intact: the error is not the cache's
                raise
            raise ModelLoadError(
                f"The cached tiny twin {path} is damaged ({damage}; loading it raised {type(exc).__name__}). "
                f"It is a cache: delete that folder (rm -r '{path}') and run the same command again to rebuild it."
            ) from None


def twin_damage(folder: Path) -> str | None:
    """What is wrong with the files of a cached tiny twin, or None: a weight file that is not a readable
    safetensors file, a JSON file that does not parse, or a pickle (a twin is written without any)."""
    import json

    from safetensors import safe_open

    for path in sorted(folder.rglob("*")):
        if path.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle"):
            return f"{path.name} is a pickle file, which a twin never holds"
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt") as f:
                    f.keys()
            elif path.suffix == ".json":
                json.loads(path.read_bytes())
        except Exception as exc:  # noqa: BLE001  (any failure to read it back is damage)
            return f"{path.name} does not read back: {(str(exc).strip().splitlines() or [''])[0][:160]}"
    return None


def hub_factory(adapter, name: str, default_source: str | None, **options) -> HubFactory:
    """A factory loading a hub checkpoint (or ``--model-path``) into ``adapter`` (a class or "module:Class")."""
    return HubFactory(adapter, name, default_source, options)


def tiny_factory(adapter, name: str, build, **options) -> TinyFactory:
    """A factory loading the tiny twin that ``build`` (a function or "module:function") writes once into the cache."""
    return TinyFactory(adapter, name, build, options)


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint of a family."""

    name: str                        # CLI name
    source: str | None               # hub id loaded by default (None: --model-path is required)
    description: str
    clip: Any = None                 # see AdapterSpec.clip
    architecture: Any = None         # see AdapterSpec.architecture; a "module:function" reference is fine
    checkpoint: str | None = None    # what `list models` shows; default: source
    projector_modules: str | None = None  # default: the family's
    options: dict = field(default_factory=dict)  # extra keyword arguments for the adapter class


@dataclass(frozen=True)
class TinyTwin:
    """The tiny random-init twin of a checkpoint: same classes, tiny config, built offline by ``build``."""

    name: str
    build: Any                       # build(directory), or a "module:function" reference
    description: str
    checkpoint: str = "tiny random-init model (seed 0), built offline"
    projector_modules: str | None = None  # default: the family's
    options: dict = field(default_factory=dict)
    clip: Any = TINY_CLIP            # the tiny open_clip twin, so baselines run offline


def model_family(adapter, *, projector_family: str, projector_modules: str, checkpoints: Sequence[Checkpoint] = (),
                 twins: Sequence[TinyTwin] = ()) -> list[AdapterSpec]:
    """The registry entries of one adapter class: its checkpoints, then its tiny twins."""
    specs = [AdapterSpec(name=c.name, factory=hub_factory(adapter, c.name, c.source, **c.options),
                         checkpoint=c.checkpoint or str(c.source), projector_family=projector_family,
                         projector_modules=c.projector_modules or projector_modules, description=c.description,
                         clip=c.clip, architecture=c.architecture) for c in checkpoints]
    specs += [AdapterSpec(name=t.name, factory=tiny_factory(adapter, t.name, t.build, **t.options),
                          checkpoint=t.checkpoint, projector_family=projector_family,
                          projector_modules=t.projector_modules or projector_modules, description=t.description,
                          clip=t.clip, tiny=True) for t in twins]
    return specs


__all__ = ["PROJECTOR_FAMILIES", "TINY_CLIP", "AdapterSpec", "check_projector_family", "register_projector_family", "Checkpoint", "HubFactory", "Ref", "TinyFactory", "TinyTwin", "hub_factory",
           "model_family", "resolve", "tiny_factory"]
