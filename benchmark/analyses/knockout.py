"""``knockout``: attention knockout (Zhang et al., CVPR 2025): which layers carry the image to the answer?

For each test image the correct class name is scored (teacher-forced log-likelihood of its answer tokens after
the paper's prompt). Then, for a sliding window of ``knockout_window`` consecutive LLM blocks, the attention
*from* some positions *to* every image token is blocked in those blocks only, by editing the explicit 4-D
attention mask that each block receives under eager attention, and the class is scored again. Reported per
window start and model state: the drop of the correct class's log-likelihood (mean over images). Two sources:

* ``last``: the answer positions (the last prompt token, which predicts the first answer token, and the answer
  tokens): the direct image -> answer route;
* ``text``: every text position, so that no text token reads the image in the window. Blocked in every block,
  this is the model without the image, with the text at its original positions (the known-answer test).

The adapter must place image tokens in the LLM's sequence (``image_token_mask``) and its blocks must receive a
4-D mask under ``attention_implementation("eager")``; otherwise the analysis is refused with the reason.
"""

from __future__ import annotations

import torch

from benchmark.evaluate.batching import IGNORE, collate
from benchmark.evaluate.prompt import build_question

from . import AnalysisUnsupported
from .hidden import require_layers

SOURCES = ("last", "text")


class MaskEditor:
    """Forward pre-hooks that block attention from ``queries`` to ``keys`` (both (B, S) bool) in chosen blocks."""

    def __init__(self, adapter):
        self.layers = adapter.llm_layers()
        self.handles = []
        self.blocked: set[int] = set()
        self.queries = self.keys = None

    def __enter__(self):
        for i, block in enumerate(self.layers):
            self.handles.append(block.register_forward_pre_hook(self._hook(i), with_kwargs=True))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()

    def _hook(self, index):
        def edit(_module, args, kwargs):
            if index not in self.blocked:
                return None
            mask = kwargs.get("attention_mask")
            if not torch.is_tensor(mask) or mask.dim() != 4:
                raise AnalysisUnsupported(
                    f"block {index} received no explicit 4-D attention mask under eager attention "
                    f"(got {type(mask).__name__}): attention knockout needs one to edit")
            q = self.queries.to(mask.device)[:, None, :, None]   # (B, 1, S, 1)
            k = self.keys.to(mask.device)[:, None, None, :]      # (B, 1, 1, S)
            block = q & k
            if mask.shape[-2] != block.shape[-2] or mask.shape[-1] != block.shape[-1]:
                raise AnalysisUnsupported(f"block {index}: attention mask of shape {tuple(mask.shape)} does not "
                                          f"cover the sequence ({tuple(block.shape[-2:])})")
            if mask.dtype == torch.bool:   # True = attend
                mask = mask & ~block
            else:                          # additive: 0 = attend, dtype minimum = blocked
                mask = mask.masked_fill(block, torch.finfo(mask.dtype).min)
            kwargs["attention_mask"] = mask
            return args, kwargs

        return edit


def answer_loglik(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(B,) summed log-probabilities of the supervised (answer) tokens, teacher-forced."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    target = labels[:, 1:].to(logits.device)
    keep = target != IGNORE
    tok = logp.gather(2, target.clamp_min(0)[..., None]).squeeze(-1)
    return (tok * keep).sum(-1).cpu()


def knockout_batch(adapter, features, *, questions, answers, windows, source: str) -> torch.Tensor:
    """(W + 1, B): the answer log-likelihood without knockout (row 0) and with each window of blocks blocked."""
    dev = adapter.device
    parts = [adapter.encode(q, a) for q, a in zip(questions, answers, strict=True)]
    batch = collate(parts, adapter.pad_token_id, with_answer=True)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    image = adapter.image_token_mask(ids).cpu()
    if not bool(image.any(dim=1).all()):
        raise AnalysisUnsupported(f"{adapter.name}: no image token in the LLM's sequence "
                                  "(adapter.image_token_mask): there is no attention to the image to knock out")
    if source == "last":
        answer = batch["labels"] != IGNORE
        # The position before the first answer token predicts it: it belongs to the answer route too.
        queries = answer | torch.roll(answer, -1, dims=1)
    else:
        queries = mask.bool() & ~image
    embeds = adapter.project(features.to(dev))
    rows = []
    with torch.no_grad(), adapter.attention_implementation("eager"), MaskEditor(adapter) as editor:
        editor.queries, editor.keys = queries, image
        for window in [()] + list(windows):
            editor.blocked = set(window)
            out = adapter.lm_forward(ids.to(dev), mask.to(dev), batch["position_ids"].to(dev), embeds)
            rows.append(answer_loglik(out.logits, batch["labels"]))
    return torch.stack(rows)


def windows_for(num_blocks: int, width: int) -> list[tuple[int, ...]]:
    if width < 1 or width > num_blocks:
        raise ValueError(f"knockout window must be between 1 and the number of blocks ({num_blocks}), got {width}")
    return [tuple(range(s, s + width)) for s in range(num_blocks - width + 1)]


def run(ctx) -> dict:
    from tqdm.auto import tqdm

    adapter = ctx.adapter
    require_layers(adapter)
    n_blocks = len(adapter.llm_layers())
    width = ctx.options.knockout_window or max(1, n_blocks // 8)
    windows = windows_for(n_blocks, width)
    samples = ctx.data.splits["test"][: ctx.options.knockout_max_images]
    store = ctx.stores["test"]
    bs = ctx.options.batch_size
    per_source = {}
    for source in SOURCES:
        chunks = []
        for b0 in tqdm(range(0, len(samples), bs), desc=f"knockout {source} ({ctx.regime})",
                       disable=not ctx.progress):
            idx = list(range(b0, min(b0 + bs, len(samples))))
            qs = [build_question(ctx.domain, ctx.classes, ctx.seed, samples[i].uid) for i in idx]
            ans = [ctx.classes[samples[i].label] for i in idx]
            chunks.append(knockout_batch(adapter, store.get(idx), questions=qs, answers=ans, windows=windows,
                                         source=source))
        per_source[source] = torch.cat(chunks, dim=1).double()  # (W + 1, N)
    curves, summary = {}, {}
    for source, ll in per_source.items():
        drop = (ll[0] - ll[1:]).mean(1)  # positive: the window carried information the answer needed
        curves[f"drop_{source}"] = drop.tolist()
        summary[f"max_drop_{source}"] = float(drop.max())
        summary[f"max_drop_{source}_window"] = int(drop.argmax())
        summary["baseline_loglik"] = float(ll[0].mean())
    return {
        "x": [w[0] for w in windows], "primary": "drop_last", "secondary": "drop_text", "x_label": f"first blocked block (window of {width})", "curves": curves,
        "summary": summary, "window": width, "windows": [list(w) for w in windows],
        "n_images": len(samples),
    }
