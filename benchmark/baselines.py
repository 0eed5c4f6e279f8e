"""The paper's baselines for one task: a uniform random classifier, CLIP zero-shot, and a probe on CLIP's embedding.

They answer "does the MLLM beat its own vision encoder?" (Verma et al., Tables 1 and 3):

* ``random``: the *exact expected* macro-F1 and accuracy of a classifier that picks one of the task's K classes
  uniformly at random for every test image (closed form, no simulation; see :func:`expected_random`);
* ``clip_zero_shot``: open_clip's CLIP (by default the one matching the adapter's vision encoder, declared by the
  adapter as ``AdapterSpec.clip``) classifies the test split by cosine similarity to "This is a photo of {}."
  (the Hugging Face zero-shot pipeline's default; other templates are averaged CLIP-style);
* ``clip_probe``: the paper's probe MLP (benchmark/evaluate/probe.py) on CLIP's pooled image embedding (Table 3: the
  1024-d pooled output of ViT-L/14-336, before CLIP's projection), next to the patch-mean pre-projection probe.

CLIP image embeddings are cached like the MLLM's vision features. The ``baselines`` stage of ``run`` calls
:func:`run_baselines`; each part is saved when done, so an interrupted stage resumes.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.evaluate.metrics import classification_metrics
from benchmark.storage.confined import confined
from benchmark.storage.results import atomic_save_tensors, atomic_write_json, atomic_write_with, read_json

# CLIPs are loaded in one place, shared with composed models; the names stay importable from here.
from .backbones import (  # noqa: F401
    LOCAL_DIR,
    TINY_CLIPS,
    ClipChoice,
    LoadedClip,
    build_tiny_clip,
    load_clip,
    tiny_clip_dir,
)
from .config import CLIP_TEMPLATES as DEFAULT_TEMPLATES  # noqa: F401  ("This is a photo of {}.")
from .errors import BenchmarkError

PAPER_CLIP = ("ViT-L-14-336", "openai")          # LLaVA-1.5's vision encoder, the paper's CLIP baseline


# -- Random (uniform) ------------------------------------------------------------------------------------------
def expected_random(test_labels: list[int], num_classes: int) -> dict:
    """Exact expected macro-F1 and accuracy of predicting each test label uniformly from ``num_classes``.

    For a class c with n_c of the N test images, let M be the number of images predicted as c and T the true
    positives among them: M ~ Binomial(N, 1/K), and given M = m the m images are a uniform random subset, so
    E[T | M = m] = m n_c / N. F1_c = 2T / (n_c + M) has a fixed denominator once M is fixed, hence

        E[F1_c] = sum_m P(M = m) * 2 m n_c / (N (n_c + m)),

    an exact finite sum (not the ratio of expectations 2E[T] / (n_c + E[M]), which overstates rare classes).
    Macro-F1 averages over the classes present in the test split, as benchmark.evaluate.metrics does; the accuracy of a
    uniform guess is 1/K whatever the labels.
    """
    labels = np.asarray(test_labels)
    n = len(labels)
    if n == 0 or num_classes < 1:
        raise BenchmarkError("The random baseline needs a non-empty test split and at least one class.")
    p = 1.0 / num_classes
    m = np.arange(n + 1)
    if num_classes == 1:  # every image is predicted as the one class: M = N with certainty (log(1 - p) is -inf)
        pmf = (m == n).astype(float)
    else:  # log-space binomial pmf: exact to float precision for any N (no overflow of the binomial coefficient)
        pmf = np.exp(np.array([math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) for k in m])
                     + m * math.log(p) + (n - m) * math.log1p(-p))
    per_class = {}
    for c in sorted(set(labels.tolist())):
        n_c = int((labels == c).sum())
        per_class[int(c)] = float(np.sum(pmf * 2.0 * m * n_c / (n * (n_c + m))))
    return {"macro_f1": float(np.mean(list(per_class.values()))), "accuracy": p, "n": n,
            "num_classes": num_classes, "per_class_f1": per_class,
            "method": "exact expectation over uniform random predictions (closed form)"}


# -- which CLIP --------------------------------------------------------------------------------------------------
def choose_clip(adapter_name: str, declared, model: str | None, pretrained: str | None) -> ClipChoice:
    """The user's ``--clip-model/--clip-pretrained`` if given, else the adapter's declared CLIP, else the paper's."""
    declared = tuple(declared) if declared else None
    if model is None and pretrained is not None:
        raise BenchmarkError("--clip-pretrained needs --clip-model too (e.g. --clip-model ViT-L-14-336 "
                             "--clip-pretrained openai).")
    if model is None:
        if declared:
            return ClipChoice(declared[0], declared[1], declared)
        return ClipChoice(*PAPER_CLIP, None, warning=(
            f"{adapter_name} declares no CLIP matching its vision encoder; the CLIP baselines use the paper's "
            f"{PAPER_CLIP[0]}/{PAPER_CLIP[1]}, which is not this model's encoder"))
    choice = ClipChoice(model, pretrained, declared)
    if declared and (model, pretrained) != declared:
        return ClipChoice(model, pretrained, declared, warning=(
            f"CLIP {choice.label} is not the CLIP that matches {adapter_name}'s vision encoder "
            f"({declared[0]}" + (f"/{declared[1]}" if declared[1] else "") + "): the baselines do not show "
            "what this model's own encoder can do"))
    if not declared:
        return ClipChoice(model, pretrained, None, warning=(
            f"{adapter_name} declares no CLIP matching its vision encoder, so {choice.label} cannot be checked "
            "against it"))
    return choice


# -- CLIP image embeddings (cached) ------------------------------------------------------------------------------
@torch.no_grad()
def encode_images(clip: LoadedClip, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(projected embedding used for zero-shot, pooled embedding before CLIP's projection) of a batch.

    open_clip's ViT ends in ``pooled @ proj``; a timm tower ends in ``head(trunk(x))``. The pooled output is
    what the paper's Table 3 probes (1024-d for ViT-L/14-336). Towers without a separate projection give the
    same tensor twice.
    """
    visual = clip.model.visual
    proj = getattr(visual, "proj", None)
    if isinstance(proj, torch.nn.Parameter):
        visual.proj = None  # the same forward, stopped before its last matmul
        try:
            pooled = visual(pixel_values)
        finally:
            visual.proj = proj
        pooled = pooled[0] if isinstance(pooled, tuple) else pooled
        return pooled @ proj, pooled
    if hasattr(visual, "trunk") and hasattr(visual, "head"):
        pooled = visual.trunk(pixel_values)
        return visual.head(pooled), pooled
    emb = clip.model.encode_image(pixel_values)
    return emb, emb


def clip_embeddings(clip: LoadedClip, samples, *, cache_dir: Path, task_fingerprint: str, split: str,
                    batch_size: int = 32, progress: bool = True) -> dict[str, torch.Tensor]:
    """{"projected", "pooled"} image embeddings of ``samples``, cached by CLIP identity, task and split."""
    from filelock import FileLock

    key = hashlib.sha256(json.dumps({"clip": clip.identity, "task": task_fingerprint, "split": split,
                                     "preprocess": repr(clip.preprocess)}, sort_keys=True).encode()).hexdigest()[:24]
    path = confined(Path(cache_dir) / "features" / "clip" / f"{key}.safetensors", Path(cache_dir), "CLIP cache entry")
    path.parent.mkdir(parents=True, exist_ok=True)
    # One process computes an entry; a second waits for it and reads it (the same lock scheme as features.py).
    with FileLock(str(path) + ".lock"):
        return _clip_embeddings_locked(clip, samples, path=path, split=split, batch_size=batch_size,
                                       progress=progress)


def _clip_embeddings_locked(clip, samples, *, path: Path, split: str, batch_size: int, progress: bool):
    from tqdm.auto import tqdm

    from benchmark.storage.integrity import CorruptFileError, load_safetensors, sha256_file

    from .tasks.base import decode_image

    sidecar = path.with_name(path.name + ".sha256")
    if path.exists():
        try:  # checked against the SHA-256 written with it; a damaged entry is recomputed
            return load_safetensors(path, sidecar.read_text().strip() if sidecar.exists() else "")
        except CorruptFileError as exc:
            print(f"[discard] cached CLIP embeddings: {exc} Recomputing them.")
            path.unlink(missing_ok=True)
    own_temp = re.compile(rf"^\.{re.escape(path.name)}(?:\.sha256)?\.tmp\.[0-9a-f]{{8}}$")  # atomic_write_with's
    for stale in path.parent.iterdir():  # this entry's, left by a killed write (we hold its lock)
        if own_temp.match(stale.name) and not stale.is_symlink():
            stale.unlink(missing_ok=True)
    device = next(clip.model.parameters()).device
    projected, pooled = [], []
    for b0 in tqdm(range(0, len(samples), batch_size), desc=f"CLIP image embeddings ({split})",
                   disable=not progress, leave=False):
        px = torch.stack([clip.preprocess(decode_image(s.load_bytes())) for s in samples[b0: b0 + batch_size]])
        a, b = encode_images(clip, px.to(device))
        projected.append(a.float().cpu())
        pooled.append(b.float().cpu())
    out = {"projected": torch.cat(projected).contiguous(), "pooled": torch.cat(pooled).contiguous()}
    atomic_save_tensors(path, out)
    atomic_write_with(sidecar, lambda tmp: tmp.write_text(sha256_file(path) + "\n"))
    return out


@torch.no_grad()
def text_classifier(clip: LoadedClip, classes: list[str], templates: tuple[str, ...]) -> torch.Tensor:
    """(C, D) unit class embeddings: each class's template embeddings, normalised, averaged, renormalised."""
    device = next(clip.model.parameters()).device
    rows = []
    for name in classes:
        emb = clip.model.encode_text(clip.tokenizer([t.format(name) for t in templates]).to(device)).float()
        emb = torch.nn.functional.normalize(emb, dim=-1).mean(0)
        rows.append(torch.nn.functional.normalize(emb, dim=-1))
    return torch.stack(rows).cpu()


def zero_shot_predict(image_embeds: torch.Tensor, class_embeds: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Argmax of cosine similarity (CLIP's logit scale and SigLIP's bias do not change the argmax)."""
    sims = torch.nn.functional.normalize(image_embeds.float(), dim=-1) @ class_embeds.T
    return sims.argmax(-1).tolist(), sims


# -- the stage ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BaselineJob:
    """What the baselines stage of one (model, task, seed) needs."""

    directory: Path
    clip: ClipChoice
    templates: tuple[str, ...]
    seed: int
    cache_dir: Path
    device: str
    progress: bool


def run_baselines(job: BaselineJob, data, probe_cfg, log=print) -> dict:
    """Random, CLIP zero-shot and CLIP-embedding probe for one seed. Each part is saved as it finishes."""
    from benchmark.evaluate.probe import train_probe

    d = job.directory
    classes = data.classes
    train, test = data.splits["train"], data.splits["test"]
    ytr, yte = [s.label for s in train], [s.label for s in test]
    if job.clip.warning:  # also recorded in metrics.json (clip.warning, clip.matches_adapter)
        log(f"warning: {job.clip.warning}")
    out = {}
    part = d / "random.json"
    if not part.exists():
        atomic_write_json(part, expected_random(yte, len(classes)))
    out["random"] = read_json(part)

    zs_part, probe_part = d / "clip_zero_shot.json", d / "clip_probe.json"
    if not (zs_part.exists() and probe_part.exists()):
        clip = load_clip(job.clip, job.cache_dir, job.device)
        emb = {split: clip_embeddings(clip, data.splits[split], cache_dir=job.cache_dir,
                                      task_fingerprint=data.fingerprint, split=split, progress=job.progress)
               for split in ("train", "test")}
        if not zs_part.exists():
            preds, sims = zero_shot_predict(emb["test"]["projected"], text_classifier(clip, classes, job.templates))
            m = classification_metrics(yte, preds, len(classes), classes)
            atomic_write_json(d / "clip_predictions.json", [
                {"uid": s.uid, "label": s.label, "prediction": p, "scores": [round(x, 6) for x in row]}
                for s, p, row in zip(test, preds, sims.tolist(), strict=True)])
            atomic_write_json(zs_part, {**m, "templates": list(job.templates), "clip_identity": clip.identity})
        if not probe_part.exists():
            res = train_probe(emb["train"]["pooled"], ytr, uids_train=[s.uid for s in train],
                              x_test=emb["test"]["pooled"], y_test=yte, num_classes=len(classes),
                              seed=job.seed, cfg=probe_cfg, progress=job.progress,
                              desc="probe (CLIP pooled embedding)")
            res["embedding"] = "CLIP pooled image embedding, before CLIP's projection (paper Table 3)"
            atomic_write_json(probe_part, res)
    out["clip_zero_shot"] = read_json(zs_part)
    out["clip_probe"] = read_json(probe_part)
    return out
