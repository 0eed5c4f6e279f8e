"""The shared, cached hidden-state extractor: one forward per image gives what every analysis needs, per layer.

For each image the paper's classification prompt (seeded class order, as in evaluation) runs once through the
adapter's ``lm_forward`` from the cached vision features. Hooks on the LLM's blocks (``adapter.llm_layers()``)
read every layer as it is computed: layer 0 is the input of the first block (the embeddings, image tokens
placed), layer ``l`` the output of block ``l-1`` (before the final norm). Each layer is reduced on the spot to

* the mean over the image-token positions and the mean over the text positions: the prompt tokens *after* the
  image, without the tokenizer's special tokens (:func:`prompt_masks`; the reference MIR code, Huang et al.
  2024, takes its text states after the image span too), so neither the start token nor the template before
  the image, which cannot attend to the image, is part of them;
* ``tokens_per_image`` evenly spaced image-token states and as many text-token states (fp16),

so memory never holds all tokens x layers x images: at most one layer's activations plus the reductions of one
part of ``PART_SIZE`` images. Parts are written as they finish (an interrupted extraction resumes) under a
content address like the vision features': the feature-cache key (checkpoint, task fingerprint, split,
preprocessing), the model state (regime and its weight files), the prompt seed and the extractor settings.
:class:`HiddenStore` reads one layer at a time.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from benchmark.evaluate.batching import collate
from benchmark.evaluate.prompt import build_question
from benchmark.storage.features import cache_key
from benchmark.storage.integrity import CorruptFileError, read_sealed_json, seal, sha256_file, verify_file
from benchmark.storage.results import atomic_save_tensors, atomic_write_json

from . import AnalysisUnsupported

EXTRACTOR_VERSION = 2  # 2: text states after the image only, without special tokens
PART_SIZE = 64
FP16_MAX = 65504.0
FIELDS = ("image_mean", "text_mean", "image_tokens", "text_tokens")


def layer_access_problem(adapter) -> str | None:
    """Why the adapter cannot give per-layer states (None if it can)."""
    try:
        layers = adapter.llm_layers()
    except NotImplementedError as exc:
        return f"{exc}: the layer-wise analyses need the LLM's blocks (see adapters/base.py)"
    if not len(layers):
        return f"{adapter.name}: llm_layers() is empty"
    return None


def require_layers(adapter) -> None:
    problem = layer_access_problem(adapter)
    if problem:
        raise AnalysisUnsupported(problem)


class LayerRecorder:
    """Calls ``on_layer(l, hidden)`` for every hidden state of a forward: l = 0 (block input) .. num_blocks."""

    def __init__(self, adapter, on_layer):
        self.layers = adapter.llm_layers()
        self.on_layer = on_layer
        self.handles = []

    def __enter__(self):
        def pre(_module, args, kwargs):
            h = args[0] if args else kwargs["hidden_states"]
            self.on_layer(0, h)

        self.handles.append(self.layers[0].register_forward_pre_hook(pre, with_kwargs=True))
        for i, block in enumerate(self.layers):
            def post(_module, _args, output, _l=i + 1):
                self.on_layer(_l, output[0] if isinstance(output, tuple) else output)

            self.handles.append(block.register_forward_hook(post))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()


def spaced_positions(mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of ``k`` evenly spaced True positions per row (repeats when a row has fewer than k)."""
    out = []
    for row in mask:
        pos = torch.nonzero(row).flatten()
        if len(pos) == 0:
            raise AnalysisUnsupported("a prompt has no token of one modality (no image tokens found by "
                                      "adapter.image_token_mask, or no text token after the image that is not a "
                                      "special token)")
        pick = torch.linspace(0, len(pos) - 1, k).round().long()
        out.append(pos[pick])
    return torch.stack(out)


def pooled_means(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, D) mean of ``hidden`` (B, S, D) over the True positions of ``mask`` (B, S), in float32."""
    m = mask.to(hidden.device, torch.float32)[..., None]
    return ((hidden.float() * m).sum(1) / m.sum(1).clamp_min(1)).cpu()


def special_token_ids(adapter) -> list[int]:
    """The ids that are markup, not text: the tokenizer's special tokens (start, end, turn and image markers,
    padding) and the image placeholder."""
    tok = getattr(adapter, "tokenizer", None)
    ids = set(getattr(tok, "all_special_ids", None) or [])
    ids.add(adapter.image_token_id)
    if adapter.pad_token_id is not None:
        ids.add(adapter.pad_token_id)
    return sorted(int(i) for i in ids)


def prompt_masks(adapter, input_ids: torch.Tensor, attention_mask: torch.Tensor):
    """(image, text) position masks of a batch of prompts.

    ``text`` holds the prompt tokens after the image only (as the MIR reference code slices its text states),
    without the tokenizer's special tokens: the start token and the template before the image cannot see the
    image under causal attention, and a start token's high-norm states would dominate any statistic of them.
    """
    input_ids = input_ids.cpu()
    image = adapter.image_token_mask(input_ids).cpu()
    valid = attention_mask.bool().cpu()
    position = torch.arange(input_ids.shape[1])
    last_image = torch.where(image, position, torch.full_like(position, -1)).max(dim=1).values
    after = (position[None] > last_image[:, None]) & (last_image[:, None] >= 0)
    special = torch.isin(input_ids, torch.tensor(special_token_ids(adapter), dtype=input_ids.dtype))
    return image, valid & ~image & after & ~special


@torch.no_grad()
def hidden_batch(adapter, features: torch.Tensor, questions: list[str], k: int) -> dict[str, torch.Tensor]:
    """The reductions of one batch: image/text means (B, L+1, D) and token samples (B, L+1, k, D)."""
    dev = adapter.device
    batch = collate([adapter.encode(q) for q in questions], adapter.pad_token_id, with_answer=False)
    image, text = prompt_masks(adapter, batch["input_ids"], batch["attention_mask"])
    img_pos, txt_pos = spaced_positions(image, k), spaced_positions(text, k)
    rows = torch.arange(len(questions))[:, None]
    per_layer: dict[int, tuple] = {}

    def on_layer(layer, h):
        h = h.detach()
        per_layer[layer] = (
            pooled_means(h, image), pooled_means(h, text),
            h[rows.to(h.device), img_pos.to(h.device)].float().clamp(-FP16_MAX, FP16_MAX).half().cpu(),
            h[rows.to(h.device), txt_pos.to(h.device)].float().clamp(-FP16_MAX, FP16_MAX).half().cpu(),
        )

    with LayerRecorder(adapter, on_layer):
        adapter.lm_forward(batch["input_ids"].to(dev), batch["attention_mask"].to(dev),
                           batch["position_ids"].to(dev), adapter.project(features.to(dev)))
    layers = sorted(per_layer)
    if layers != list(range(len(adapter.llm_layers()) + 1)):
        raise AnalysisUnsupported(f"{adapter.name}: the forward did not run every block of llm_layers() "
                                  f"(saw hidden states {layers})")
    return {name: torch.stack([per_layer[j][i] for j in layers], dim=1) for i, name in enumerate(FIELDS)}


@dataclass(frozen=True)
class HiddenRequest:
    """What one extraction's states depend on, and so its cache address: a split of a task, a model state, the
    prompt (seeded class order, domain, classes) and how many token states to keep per image."""

    task_fingerprint: str
    split: str
    state: dict                 # identifies the weights: the regime and its trained-state files
    seed: int                   # the prompt's class order, as in evaluation
    domain: str
    classes: Sequence[str]
    tokens_per_image: int = 8

    def question(self, uid: str) -> str:
        return build_question(self.domain, self.classes, self.seed, uid)


def hidden_key(adapter, request: HiddenRequest) -> str:
    # The prompt template (the text around image and question) changes the states, so it is part of the address.
    payload = json.dumps({"features": cache_key(adapter, request.task_fingerprint, request.split),
                          "state": request.state, "seed": request.seed,
                          "prompt": adapter.format_prompt("{question}"),
                          "domain": request.domain, "classes": list(request.classes), "k": request.tokens_per_image,
                          "version": EXTRACTOR_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


class HiddenStore:
    """Read-only view of one split's cached hidden-state reductions, one layer at a time."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        meta = json.loads((self.directory / "index.json").read_text())
        self.uids: list[str] = meta["uids"]
        self.labels: list[int] = meta["labels"]
        self.num_layers: int = meta["num_layers"]       # hidden states: embeddings + one per block
        self.dim: int = meta["dim"]
        self.tokens_per_image: int = meta["tokens_per_image"]
        self._parts = [self.directory / p for p in meta["parts"]]

    def __len__(self):
        return len(self.uids)

    def _layer(self, name: str, layer: int) -> torch.Tensor:
        if not 0 <= layer < self.num_layers:
            raise IndexError(f"layer {layer} out of range 0..{self.num_layers - 1}")
        out = []
        for p in self._parts:
            with safe_open(str(p), framework="pt") as f:
                out.append(f.get_slice(name)[:, layer: layer + 1])
        return torch.cat(out)[:, 0]

    def image_mean(self, layer: int) -> torch.Tensor:
        """(N, D) float32: each image's mean image-token state at ``layer``."""
        return self._layer("image_mean", layer)

    def text_mean(self, layer: int) -> torch.Tensor:
        return self._layer("text_mean", layer)

    def image_tokens(self, layer: int) -> torch.Tensor:
        """(N, k, D) float32: ``k`` evenly spaced image-token states per image at ``layer``."""
        return self._layer("image_tokens", layer).float()

    def text_tokens(self, layer: int) -> torch.Tensor:
        return self._layer("text_tokens", layer).float()


def extract_hidden(adapter, request: HiddenRequest, *, samples, features, cache_dir: Path, batch_size: int = 8,
                   progress: bool = True) -> tuple[HiddenStore, float]:
    """Cached hidden-state reductions of ``samples`` in one model state. Returns the store and seconds spent.

    ``features`` is the split's vision-feature store (rows in sample order); ``request.state`` identifies the
    weights (regime and trained-state files) for the cache address.
    """
    require_layers(adapter)
    if request.tokens_per_image < 1:
        raise ValueError(f"tokens_per_image must be at least 1, got {request.tokens_per_image}")
    directory = Path(cache_dir) / "hidden" / hidden_key(adapter, request)
    cached = _verified_store(directory)
    if cached is not None:
        return cached, 0.0
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_json(directory / "key.json", {"adapter": adapter.name, "checkpoint": str(adapter.checkpoint),
                                               "task_fingerprint": request.task_fingerprint, "split": request.split,
                                               "state": request.state, "seed": request.seed,
                                               "tokens_per_image": request.tokens_per_image})
    start = time.perf_counter()
    parts = _write_parts(adapter, request, directory, samples=samples, features=features, batch_size=batch_size,
                         progress=progress)
    with safe_open(str(directory / parts[0]), framework="pt") as f:
        shape = f.get_slice("image_mean").get_shape()
    num_layers, dim = shape[1], shape[2]
    atomic_write_json(directory / "index.json", seal({
        "uids": [s.uid for s in samples], "labels": [s.label for s in samples], "parts": parts,
        "num_layers": num_layers, "dim": dim, "tokens_per_image": request.tokens_per_image,
        "sha256": {name: sha256_file(directory / name) for name in parts},
    }))
    return HiddenStore(directory), time.perf_counter() - start


def _verified_store(directory: Path) -> HiddenStore | None:
    """The finished extraction in ``directory`` if its index and parts pass their checks; a failing one is removed."""
    if not (directory / "index.json").exists():
        return None
    try:
        index = read_sealed_json(directory / "index.json")
        for name in index["parts"]:
            verify_file(directory / name, index.get("sha256", {}).get(name))
        return HiddenStore(directory)
    except (CorruptFileError, KeyError, TypeError) as exc:
        import shutil

        print(f"[discard] hidden-state cache {directory} fails its checks ({exc}); recomputing it.")
        shutil.rmtree(directory)
        return None


def _write_parts(adapter, request: HiddenRequest, directory: Path, *, samples, features, batch_size: int,
                 progress: bool) -> list[str]:
    """Extract and write every part of ``PART_SIZE`` images not already written; the parts' file names, in order."""
    from tqdm.auto import tqdm

    parts = []
    bar = tqdm(total=len(samples), desc=f"hidden states ({request.state.get('regime', '?')}, {request.split})",
               unit="img", disable=not progress)
    for p0 in range(0, len(samples), PART_SIZE):
        name = f"part-{p0 // PART_SIZE:05d}.safetensors"
        chunk = range(p0, min(p0 + PART_SIZE, len(samples)))
        if (directory / name).exists():  # finished before an interruption
            parts.append(name)
            bar.update(len(chunk))
            continue
        acc = {f: [] for f in FIELDS}
        for b0 in range(chunk.start, chunk.stop, batch_size):
            idx = list(range(b0, min(b0 + batch_size, chunk.stop)))
            questions = [request.question(samples[i].uid) for i in idx]
            out = hidden_batch(adapter, features.get(idx), questions, request.tokens_per_image)
            for f in FIELDS:
                acc[f].append(out[f])
            bar.update(len(idx))
        tensors = {f: torch.cat(v).contiguous() for f, v in acc.items()}
        atomic_save_tensors(directory / name, tensors)
        parts.append(name)
    bar.close()
    return parts
