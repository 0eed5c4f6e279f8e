"""Offline tiny twins of real checkpoints: a byte-level BPE tokenizer and a save-then-load helper.

A tiny twin is the *same* transformers model class as the real checkpoint, with a tiny config and random
weights from a fixed seed. It is written once to the cache directory with ``save_pretrained`` and always
loaded back with ``from_pretrained``, so tests and the demo exercise the real loading path.

Importing this module does not import torch (``cache list`` computes every registered twin's key with it).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TINY_FORMAT = "2"  # part of every twin's build hash: bump to rebuild all cached twins

# A fixed English corpus for the tokenizer: the benchmark prompt, conversation markers and the vocabulary
# of its domains. Byte-level BPE covers any other string too, only with more tokens.
_CORPUS = """
Classify this image into one of the following categories relating to
Only output a single final classification label and NOTHING ELSE.
USER: ASSISTANT: user assistant system image images photo picture label labels category categories
skin diseases dermatology acne rosacea eczema psoriasis melanoma nevi moles lupus herpes warts urticaria hives
fungal infections bacterial infections cellulitis impetigo vasculitis scabies lyme disease seborrheic keratoses
actinic keratosis basal cell carcinoma malignant lesions bullous disease vascular tumors pigmentation disorders
hair loss alopecia nail atopic dermatitis contact dermatitis poison ivy exanthems drug eruptions systemic
plant leaf diseases apple scab rust corn gray leaf spot blight tomato early late mold bacterial septoria mosaic
virus yellow curl potato bell pepper squash powdery mildew grape black rot cherry peach strawberry soyabean
raspberry blueberry healthy leaf leaves textures banded blotchy braided bubbly bumpy chequered cobwebbed
cracked crosshatched crystalline dotted fibrous flecked freckled frilly gauzy grid grooved honeycombed
interlaced knitted lacelike lined marbled matted meshed paisley perforated pitted pleated polka dotted
porous potholed scaly smeared spiralled sprinkled stained stratified striped studded swirly veined waffled
woven wrinkled zigzagged humanitarian infrastructure and utility damage affected individuals rescue
volunteering or donation effort other relevant information not humanitarian disaster flood fire earthquake
textile surface defects nominal global defect local defect fabric handwritten digits zero one two three four
five six seven eight nine satellite land use annual crop forest herbaceous vegetation highway industrial
pasture permanent residential river sea lake
"""


# The BOS a tiny twin's tokenizer prepends to every text, by the family of the real checkpoint's tokenizer. Llama-1/2
# (Vicuna, LLaVA), OPT and Gemma tokenizers prepend one; Qwen's (Qwen2-VL, InternVL's Qwen2 LLM) and other
# ChatML-style tokenizers prepend none: their chat template writes every marker itself. A twin whose tokenizer
# prepends a BOS that the real one does not would train and score a token the real model never sees.
BOS_BY_TOKENIZER = {"llama": "<s>", "opt": "<s>", "gemma": "<s>", "qwen": None, "chatml": None}


def build_tokenizer(vocab_size: int = 768, extra_special: tuple[str, ...] = ("<image>",), *, bos: str | None = "<s>",
                    named_special: dict[str, str] | None = None):
    """Train a small byte-level BPE tokenizer offline and wrap it as a transformers fast tokenizer.

    ``bos``: the token prepended to every text the tokenizer encodes with special tokens, as the real checkpoint's
    tokenizer does: ``"<s>"`` (the default: Llama/Vicuna, OPT, Gemma) or ``None`` for tokenizers that prepend
    nothing (Qwen, InternVL, ChatML models; see :data:`BOS_BY_TOKENIZER`). ``<s>`` stays in the vocabulary and is
    the tokenizer's ``bos_token`` either way, so the vocabulary does not depend on it. ``named_special``:
    special tokens a processor reads by attribute name (``{"start_image_token": "<img>"}`` gives
    ``tokenizer.start_image_token`` and ``tokenizer.start_image_token_id``); they join the vocabulary after
    ``extra_special``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    named = dict(named_special or {})
    extra = (*extra_special, *[t for t in named.values() if t not in extra_special])
    special = ["<unk>", "<s>", "</s>", "<pad>", *extra]
    if bos is not None and bos not in special:
        raise ValueError(f"build_tokenizer(bos={bos!r}): the BOS must be one of its special tokens {special}")
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line for line in _CORPUS.splitlines() if line.strip()] * 4, trainer=trainer)
    if bos is None:
        tok.post_processor = processors.TemplateProcessing(single="$A")
    else:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A",
                                                           special_tokens=[(bos, tok.token_to_id(bos))])
    listed = [t for t in extra if t not in named.values()]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_special_tokens=named or listed,
    )
    if named and listed:  # both kinds: the unnamed ones are added as special tokens too (already in the vocabulary)
        fast.add_special_tokens({"additional_special_tokens": listed})
    return fast


def build_hash(build) -> str:
    """A digest of everything that decides what ``build`` writes: its code, its bound values, the versions.

    The code is the source of the module that defines ``build`` (its helpers and constants live there too)
    plus this module (the tokenizer corpus); closures and ``functools.partial`` add their bound values;
    transformers' version changes the saved config format.

    ``build`` may also be a ``"module:function"`` reference (as a registry holds it): a function defined by a
    plain top-level ``def`` of its module is then read from the module's file, to the same digest, without
    importing the module (a builder's module imports torch); any other reference is imported.
    """
    import functools
    import hashlib
    import inspect
    import sys

    from benchmark.refs import Ref, resolve

    parts = [TINY_FORMAT, _transformers_version(), inspect.getsource(sys.modules[__name__])]
    plain = _plain_function(str(build)) if isinstance(build, str | Ref) else None
    if plain is not None:
        return hashlib.sha256("\0".join([*parts, *plain]).encode()).hexdigest()[:12]
    fn = resolve(build)
    while isinstance(fn, functools.partial):
        parts.append(repr((fn.args, sorted(fn.keywords.items()))))
        fn = fn.func
    parts.append(getattr(fn, "__qualname__", repr(fn)))
    module = inspect.getmodule(fn)
    try:
        parts.append(inspect.getsource(module) if module is not None else inspect.getsource(fn))
    except (OSError, TypeError):  # defined interactively: fall back to the compiled code
        parts.append(repr(getattr(fn, "__code__", fn)))
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            continue
        parts.append(getattr(value, "__qualname__", None) or repr(value))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def _transformers_version() -> str:
    """transformers' version from its installed metadata: importing it would take seconds (and torch)."""
    from importlib import metadata

    try:
        return metadata.version("transformers")
    except metadata.PackageNotFoundError:  # a source tree on sys.path, without metadata
        import transformers

        return transformers.__version__


def _plain_function(target: str) -> tuple[str, str] | None:
    """(qualified name, module source) of the function a ``"module:function"`` reference names, read from the
    module's file as ``inspect.getsource`` reads it (decoded as Python decodes source, universal newlines, a final
    newline), when the module binds that name exactly once, by an undecorated top-level ``def``; else None (a
    closure, a partial or anything else bound there: only importing the module tells what it is)."""
    import ast
    import importlib.util
    import tokenize

    module, _, name = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        if spec is None or not (spec.origin or "").endswith(".py") or not name.isidentifier():
            return None
        with tokenize.open(spec.origin) as f:
            source = f.read()
        tree = ast.parse(source)
    except (ImportError, ValueError, OSError, SyntaxError):  # ImportError: a parent package does not import
        return None
    source += "" if not source or source.endswith("\n") else "\n"
    bindings = [n for n in ast.walk(tree) if _binds(n, name)]
    plain = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name and not n.decorator_list]
    return (name, source) if len(bindings) == 1 and bindings == plain else None


def _binds(node, name: str) -> bool:
    """Whether the syntax node ``node`` binds ``name`` (in any scope: a stricter test than Python's, never a looser)."""
    import ast

    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Name):
        return node.id == name and not isinstance(node.ctx, ast.Load)
    if isinstance(node, ast.alias):  # import a.b binds a; from m import * binds anything
        return node.name == "*" or (node.asname or node.name.split(".")[0]) == name
    if isinstance(node, ast.Global | ast.Nonlocal):
        return name in node.names
    if isinstance(node, ast.arg):
        return node.arg == name
    return getattr(node, "name", None) == name or getattr(node, "rest", None) == name  # except as, match patterns


def zero_matrices(directory: Path, below: float = 1e-6) -> list[str]:
    """``file:name`` of every weight matrix (2-D or more) saved under ``directory`` whose entries are all zero, or
    all smaller than ``below`` in magnitude.

    Some models' ``_init_weights`` zero a layer on purpose (Gemma 3's projection matrix, BLIP-2's queries) or
    draw it at a negligible scale (BLIP-2's vision embeddings at ``initializer_range=1e-10``): harmless in a real
    checkpoint, whose weights are loaded over it, but a random twin keeps them, and a zero projector makes every
    image look the same, so checks comparing two paths pass vacuously.
    """
    from safetensors.torch import load_file

    found = []
    for path in sorted(Path(directory).rglob("*.safetensors")):
        for k, v in load_file(str(path)).items():
            if v.dim() >= 2 and v.is_floating_point() and float(v.abs().max()) < below:
                found.append(f"{path.relative_to(directory)}:{k}")
    return found


def rerandomise_zero_matrices(directory: Path, seed: int = 0, std: float = 0.02, below: float = 1e-6) -> list[str]:
    """Give the :func:`zero_matrices` saved under ``directory`` normal(0, ``std``) values; returns their names.

    For a tiny twin's ``build`` to call after ``save_pretrained`` when the model's init leaves layers at zero.
    Vectors (biases, norm scales, gates) are left alone: zero is a meaningful value for them.
    """
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    changed: list[str] = []
    gen = torch.Generator().manual_seed(seed)
    for path in sorted(Path(directory).rglob("*.safetensors")):
        state = load_file(str(path))
        zero = [k for k, v in state.items()
                if v.dim() >= 2 and v.is_floating_point() and float(v.abs().max()) < below]
        if not zero:
            continue
        for k in zero:
            state[k] = (torch.randn(state[k].shape, generator=gen) * std).to(state[k].dtype)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()  # save_pretrained's {"format": "pt"}, which from_pretrained checks
        save_file(state, str(path), metadata=metadata)
        changed += [f"{path.relative_to(directory)}:{k}" for k in zero]
    return changed


# Norms named ``norm`` or ``final_layer_norm`` (the LLM's final norm in every family; OPT also names its blocks'
# second norm so; timm ViTs their last norm): a random init leaves them at unit scale and zero shift, under which
# a norm applied twice equals it applied once, so a bug that skips or repeats one would change no number.
_NAMED_NORM = re.compile(r"(^|\.)(norm|final_layer_norm)\.(weight|bias)$")


def vary_named_norms(directory: Path, seed: int = 0, spread: float = 0.5) -> list[str]:
    """Add seeded uniform(-``spread``, ``spread``) values to every constant :data:`_NAMED_NORM` vector saved under
    ``directory`` (ones become 0.5-1.5, Gemma's zero offsets -0.5-0.5, zero biases small shifts); their names."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    changed: list[str] = []
    gen = torch.Generator().manual_seed(seed)
    for path in sorted(Path(directory).rglob("*.safetensors")):
        state = load_file(str(path))
        keys = [k for k, v in state.items() if _NAMED_NORM.search(k) and v.dim() == 1 and v.is_floating_point()
                and bool((v == v[0]).all())]
        if not keys:
            continue
        for k in keys:
            noise = (torch.rand(state[k].shape, generator=gen) * 2 - 1) * spread
            state[k] = (state[k].float() + noise).to(state[k].dtype)
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata()
        save_file(state, str(path), metadata=metadata)
        changed += [f"{path.relative_to(directory)}:{k}" for k in keys]
    return changed


TWIN_MANIFEST = "projbench-twin.json"


def twin_dir(cache_dir: Path, name: str, build) -> Path:
    """``cache_dir/tiny/<name>-<hash of the build code>``: where the twin ``build`` (a function or a
    ``"module:function"`` reference) makes is cached."""
    return Path(cache_dir) / "tiny" / f"{name}-{build_hash(build)}"


def materialise(cache_dir: Path, name: str, build: Callable[[Path], None]) -> Path:
    """Return the twin's cached directory (:func:`twin_dir`), building it atomically with ``build(tmpdir)`` if absent.

    The directory is keyed by :func:`build_hash`, so editing ``build`` (or its module) builds a new twin
    instead of silently reusing the old one. The final norms get non-unit scales (:func:`vary_named_norms`). Weight matrices that ``build`` left at zero are listed in
    ``projbench-twin.json`` (``zero_matrices``) and left as they are: the conformance suite fails a twin whose
    projector output is zero, naming them; ``build`` fixes it with :func:`rerandomise_zero_matrices`.
    """
    import json

    from benchmark.storage.confined import confined

    target = confined(twin_dir(cache_dir, name, build), Path(cache_dir), "tiny-twin cache folder")
    if (target / TWIN_MANIFEST).exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        build(tmp)
        if not any(tmp.rglob("config.json")):
            raise RuntimeError(f"the tiny twin builder for {name!r} wrote no config.json into {tmp}: it must "
                               "save_pretrained() the model (and processor) into the directory it is given")
        manifest = {"name": name, "build": getattr(build, "__qualname__", repr(build)),
                    "build_hash": build_hash(build), "varied_norms": vary_named_norms(tmp),
                    "zero_matrices": zero_matrices(tmp)}
        (tmp / TWIN_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process built it first
            if not (target / TWIN_MANIFEST).exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
