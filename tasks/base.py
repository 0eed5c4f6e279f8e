"""Task definitions: a declarative, versioned description of one image-classification task.

A :class:`TaskSpec` says what the task is (name, version, the domain phrase of the prompt, class names) and
where its images come from (a :class:`Source`). Loading it gives a :class:`TaskData`: the train and test
samples, the label space actually present, and a content fingerprint used as the feature-cache key.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from benchmark.errors import DataError

SPLITS = ("train", "test")


def normalize_class_name(folder: str) -> str:
    """Folder name -> human-readable class name: separators become spaces, case is folded.

    "Bell_pepper leaf" -> "bell pepper leaf"; "Acne and Rosacea Photos" stays word-separated.
    """
    name = re.sub(r"[_\-]+", " ", folder)
    name = re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", " ", name)  # CamelCase word boundaries
    return re.sub(r"\s+", " ", name).strip().lower()


@dataclass(frozen=True)
class Sample:
    uid: str                         # stable identifier (relative path, dataset index, ...)
    label: int                       # index into TaskData.classes
    load_bytes: Callable[[], bytes]  # the encoded image, read lazily
    sha256: str = ""                 # of the encoded image


def decode_image(data: bytes) -> Image.Image:
    """Decode to RGB, converting grayscale, palette, CMYK and alpha images."""
    img = Image.open(io.BytesIO(data))
    img.load()
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.split()[-1])
        return background
    return img.convert("RGB")


@dataclass
class RawSplit:
    """What a source yields for one split: (uid, class key, bytes loader) triples, before validation."""

    items: list[tuple[str, str, Callable[[], bytes]]] = field(default_factory=list)


class Source:
    """Where a task's images come from. ``load`` returns raw items per split, keyed by class key."""

    kind = "source"

    def describe(self) -> str:
        raise NotImplementedError

    def load(self, data_dir: Path | None) -> dict[str, RawSplit]:
        raise NotImplementedError


@dataclass(frozen=True)
class TaskSpec:
    name: str                                   # CLI name, e.g. "derm"
    version: str                                # bump whenever data, classes or prompt change
    domain: str                                 # the <task> phrase of the paper prompt
    classes: tuple[str, ...]                    # human-readable class names (the label space)
    source: Source                              # default source; --data-dir swaps in a local folder
    description: str = ""
    citation: str = ""
    license: str = ""
    class_keys: dict[str, str] | None = None    # source class key -> class name, where not normalize()
    origin: str = "builtin"                     # filled in by the registry

    def class_for_key(self, key: str) -> str | None:
        if self.class_keys and key in self.class_keys:
            return self.class_keys[key]
        name = normalize_class_name(key)
        return name if name in self.classes else None


@dataclass
class TaskData:
    spec: TaskSpec
    classes: list[str]                          # label space present in the data (order of spec.classes)
    splits: dict[str, list[Sample]]
    fingerprint: str
    skipped: dict[str, list[str]]               # split -> uids of unreadable images
    missing_classes: list[str]                  # declared classes with no training images
    limit: dict | None = None                   # e.g. {"max_per_class": 8}
    source_description: str = ""

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: dict(Counter(self.classes[x.label] for x in xs)) for s, xs in self.splits.items()}


def _check_image(data: bytes) -> bool:
    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (64, 64))  # JPEG: decode at reduced scale, still reads every byte
        img.load()
        return True
    except Exception:
        return False


def load_task(
    spec: TaskSpec,
    data_dir: Path | None = None,
    max_per_class: int | None = None,
    progress: bool = True,
) -> TaskData:
    """Load, validate and fingerprint a task. Unreadable images are skipped and counted, never fatal."""
    from tqdm.auto import tqdm

    from .sources import ImageFolderSource

    source = ImageFolderSource() if data_dir is not None else spec.source
    raw = source.load(data_dir)
    for split in SPLITS:
        if split not in raw or not raw[split].items:
            where = data_dir or source.describe()
            raise DataError(f"Task {spec.name!r}: no {split} images found in {where}.")

    if not spec.classes:  # a generic folder task: the label space is the class folders
        keys = sorted({k for s in SPLITS for _, k, _ in raw[s].items})
        names = [normalize_class_name(k) for k in keys]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise DataError(
                f"Class folders {[k for k in keys if normalize_class_name(k) in clashes]} all normalise to "
                f"{clashes}; rename them so that each class has one name."
            )
        spec = replace(spec, classes=tuple(names), class_keys=dict(zip(keys, names, strict=True)))

    # Map class keys to class names; every key must map to a declared class.
    unknown = sorted({k for s in SPLITS for _, k, _ in raw[s].items if spec.class_for_key(k) is None})
    if unknown:
        raise DataError(
            f"Task {spec.name!r}: class folder(s) {unknown} match no class of the task definition "
            f"(classes: {list(spec.classes)}). Rename the folders or check that --data-dir points at this task."
        )
    train_names = {spec.class_for_key(k) for _, k, _ in raw["train"].items}
    test_names = {spec.class_for_key(k) for _, k, _ in raw["test"].items}
    unseen = sorted(test_names - train_names)
    if unseen:
        raise DataError(
            f"Task {spec.name!r}: test class(es) {unseen} have no training images; "
            "fine-tuning and probes cannot learn them. Add training images or remove those test folders."
        )
    classes = [c for c in spec.classes if c in train_names]
    index = {c: i for i, c in enumerate(classes)}

    splits: dict[str, list[Sample]] = {}
    skipped: dict[str, list[str]] = {}
    digest = hashlib.sha256()
    digest.update(repr((spec.name, spec.version, spec.domain, classes)).encode())
    for split in SPLITS:
        items = sorted(raw[split].items, key=lambda t: t[0])
        if max_per_class is not None:
            items = _limit_per_class(items, max_per_class)
        good, bad = [], []
        for uid, key, loader in tqdm(items, desc=f"{spec.name}: checking {split} images", disable=not progress,
                                     leave=False):
            try:
                data = loader()
            except OSError:
                bad.append(uid)
                continue
            if not _check_image(data):
                bad.append(uid)
                continue
            sha = hashlib.sha256(data).hexdigest()
            label = index[spec.class_for_key(key)]
            good.append(Sample(uid, label, loader, sha))
            digest.update(f"{split}\t{uid}\t{label}\t{sha}\n".encode())
        splits[split], skipped[split] = good, bad
    for split in SPLITS:
        if not splits[split]:
            raise DataError(f"Task {spec.name!r}: every {split} image was unreadable ({len(skipped[split])}).")
    return TaskData(
        spec=spec,
        classes=classes,
        splits=splits,
        fingerprint=digest.hexdigest()[:16],
        skipped=skipped,
        missing_classes=[c for c in spec.classes if c not in train_names],
        limit={"max_per_class": max_per_class} if max_per_class is not None else None,
        source_description=str(data_dir) if data_dir is not None else source.describe(),
    )


def _limit_per_class(items, k: int):
    """Keep the first ``k`` items of each class in a deterministic, content-independent order (by uid hash)."""
    by_class: dict[str, list] = {}
    for item in sorted(items, key=lambda t: hashlib.sha256(t[0].encode()).hexdigest()):
        by_class.setdefault(item[1], []).append(item)
    return sorted((it for xs in by_class.values() for it in xs[:k]), key=lambda t: t[0])


def stratified_holdout(uids_labels: list[tuple[str, str]], fraction: float) -> set[str]:
    """Deterministic stratified hold-out by uid hash: the ``fraction`` of each class whose hashes sort first."""
    by_class: dict[str, list[str]] = {}
    for uid, label in uids_labels:
        by_class.setdefault(label, []).append(uid)
    held = set()
    for uids in by_class.values():
        uids = sorted(uids, key=lambda u: hashlib.sha256(u.encode()).hexdigest())
        held.update(uids[: max(1, round(len(uids) * fraction))])
    return held
