"""Task definitions: a declarative, versioned description of one image-classification task.

A :class:`TaskSpec` says what the task is (name, version, the domain phrase of the prompt, class names) and
where its images come from (a :class:`Source`). Loading it gives a :class:`TaskData`: the train and test
samples, the label space actually present, what was skipped or excluded, images shared by train and test, and
a content fingerprint used as the feature-cache key.
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
    """Folder name -> human-readable class name: separators and CamelCase become spaces, case is folded.

    "Bell_pepper leaf" -> "bell pepper leaf"; "AnnualCrop" -> "annual crop"; "polka-dotted" -> "polka dotted".
    """
    name = re.sub(r"[_\-]+", " ", folder)
    name = re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", " ", name)          # AnnualCrop -> Annual Crop
    name = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z]{2,})", " ", name)      # HPVInfection -> HPV Infection, not "ST Ds"
    return re.sub(r"\s+", " ", name).strip().lower()


@dataclass(frozen=True)
class Sample:
    uid: str                         # stable identifier (relative path, dataset index, ...)
    label: int                       # index into TaskData.classes
    load_bytes: Callable[[], bytes]  # the encoded image, read lazily
    sha256: str = ""                 # of the encoded image


# How images are decoded; part of the task fingerprint, so features cached under an older decoding are not reused.
# 2: EXIF orientation applied (a phone photo stored sideways with "rotate 90" in its EXIF is upright, as every
# viewer shows it).
DECODE_VERSION = 2


def decode_image(data: bytes) -> Image.Image:
    """Decode to RGB, upright per the EXIF orientation, converting grayscale, palette, CMYK and alpha images
    (alpha over white)."""
    from PIL import ImageOps

    img = Image.open(io.BytesIO(data))
    img.load()
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGB", img.size, (255, 255, 255))
        background.paste(img, mask=img.split()[-1])
        return background
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grayscale: scale to 8 bits, not clip
        import numpy as np

        arr = np.asarray(img, dtype=np.float64)
        hi = arr.max() or 1.0
        img = Image.fromarray((arr * (255.0 / hi)).astype("uint8"), "L")
    return img.convert("RGB")


@dataclass
class RawSplit:
    """What a source yields for one split: (uid, class key, bytes loader) triples, before validation.

    ``dropped`` counts records the source itself left out, by reason (e.g. no image label).
    """

    items: list[tuple[str, str, Callable[[], bytes]]] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


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
    source: Source                              # default source
    description: str = ""
    citation: str = ""
    license: str = ""
    class_keys: dict[str, str] | None = None    # source class key -> class name, where not normalize()
    exclude_keys: tuple[str, ...] = ()          # source class keys deliberately left out of the task
    local_source: Source | None = None          # reads --data-dir (default: train/<class>/, test/<class>/)
    origin: str = "builtin"                     # filled in by the registry

    def class_for_key(self, key: str) -> str | None:
        """The class a source key belongs to: declared mapping, then the normalised key itself."""
        if self.class_keys and key in self.class_keys:
            return self.class_keys[key]
        name = normalize_class_name(key)
        if name in self.classes:
            return name
        for k, v in (self.class_keys or {}).items():  # e.g. a hub copy that lower-cased the folder names
            if normalize_class_name(k) == name:
                return v
        return None



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
    duplicates: list[tuple[str, str]] = field(default_factory=list)       # (train uid, test uid), same bytes
    dropped_duplicates: list[str] = field(default_factory=list)           # test uids removed (--drop-duplicates)
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)     # split -> {reason or key: count}

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


def _uid_order(uid: str) -> str:
    """A content-independent, stable order for picking "the first k" of a class."""
    return hashlib.sha256(uid.encode()).hexdigest()


def load_task(
    spec: TaskSpec,
    data_dir: Path | None = None,
    max_per_class: int | None = None,
    progress: bool = True,
) -> TaskData:
    """Load, validate and fingerprint a task.

    Unreadable images are skipped and counted, never fatal. Inconsistent label spaces (folders matching no
    class, two folders normalising to one class, a test class without training images, an empty class) are
    a :class:`DataError` that names the classes. ``max_per_class`` keeps the first ``k`` *readable* images
    of every class (in uid-hash order), so a corrupt file does not unbalance a quick run.
    """
    from .sources import ImageFolderSource

    if data_dir is not None:
        source = spec.local_source or ImageFolderSource()
    else:
        source = spec.source
    raw = source.load(data_dir)
    where = data_dir or source.describe()
    for split in SPLITS:
        if split not in raw or not raw[split].items:
            raise DataError(f"Task {spec.name!r}: no {split} images found in {where}.")

    excluded = {s: dict(raw[s].dropped) for s in SPLITS}
    leave_out = {normalize_class_name(k) for k in spec.exclude_keys}
    items = {}
    for s in SPLITS:
        kept = []
        for it in raw[s].items:
            if normalize_class_name(it[1]) in leave_out:
                excluded[s][it[1]] = excluded[s].get(it[1], 0) + 1
            else:
                kept.append(it)
        items[s] = kept
    if not spec.classes:  # a generic folder task: the label space is the class folders
        spec = _spec_from_folders(spec, items)
    _check_label_space(spec, items, where)

    train_names = {spec.class_for_key(k) for _, k, _ in items["train"]}
    classes = [c for c in spec.classes if c in train_names]
    index = {c: i for i, c in enumerate(classes)}
    splits, skipped = {}, {}
    for split in SPLITS:
        splits[split], skipped[split] = _validate(spec, items[split], index, split, max_per_class, progress)
    empty = [c for c in classes if not any(x.label == index[c] for x in splits["train"])]
    if empty:
        raise DataError(
            f"Task {spec.name!r}: every training image of class(es) {empty} was unreadable "
            f"({sum(len(v) for v in skipped.values())} unreadable file(s) in total). Replace the broken files."
        )
    if not splits["test"]:
        raise DataError(f"Task {spec.name!r}: every test image was unreadable ({len(skipped['test'])}).")

    digest = hashlib.sha256(repr((spec.name, spec.version, spec.domain, classes)).encode())
    digest.update(f"decode {DECODE_VERSION}\n".encode())
    for split in SPLITS:
        for x in splits[split]:
            digest.update(f"{split}\t{x.uid}\t{x.label}\t{x.sha256}\n".encode())
    return TaskData(
        spec=spec,
        classes=classes,
        splits=splits,
        fingerprint=digest.hexdigest()[:16],
        skipped=skipped,
        missing_classes=[c for c in spec.classes if c not in train_names],
        limit={"max_per_class": max_per_class} if max_per_class is not None else None,
        source_description=str(data_dir) if data_dir is not None else source.describe(),
        duplicates=_duplicates(splits),
        excluded={s: v for s, v in excluded.items() if v},
    )


def _spec_from_folders(spec: TaskSpec, items) -> TaskSpec:
    keys = sorted({k for s in SPLITS for _, k, _ in items[s]})
    names = [normalize_class_name(k) for k in keys]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        raise DataError(
            f"Class folders {[k for k in keys if normalize_class_name(k) in clashes]} all normalise to "
            f"{clashes}; rename them so that each class has one name."
        )
    return replace(spec, classes=tuple(names), class_keys=dict(zip(keys, names, strict=True)))


def _check_label_space(spec: TaskSpec, items, where) -> None:
    keys = {s: {k for _, k, _ in items[s]} for s in SPLITS}
    unknown = sorted({k for s in SPLITS for k in keys[s] if spec.class_for_key(k) is None})
    if unknown:
        raise DataError(
            f"Task {spec.name!r}: class folder(s) {unknown} match no class of the task definition "
            f"(classes: {list(spec.classes)}). Rename the folders or check that --data-dir points at this task."
        )
    # Several folders may feed one class only where the task definition says so (e.g. CrisisMMD's
    # "vehicle_damage" -> "infrastructure and utility damage"); otherwise it is two spellings of one class.
    by_class: dict[str, set[str]] = {}
    for k in keys["train"] | keys["test"]:
        by_class.setdefault(spec.class_for_key(k), set()).add(k)
    declared = set(spec.class_keys or {})
    clashes = {c: sorted(ks) for c, ks in by_class.items() if len(ks) > 1 and not ks <= declared}
    if clashes:
        detail = "; ".join(f"{ks} -> {c!r}" for c, ks in sorted(clashes.items()))
        raise DataError(
            f"Task {spec.name!r}: differently named class folders normalise to the same class: {detail} "
            f"(in {where}). Merge or rename them so that each class has one folder name."
        )
    train_names = {spec.class_for_key(k) for k in keys["train"]}
    unseen = sorted({spec.class_for_key(k) for k in keys["test"]} - train_names)
    if unseen:
        raise DataError(
            f"Task {spec.name!r}: test class(es) {unseen} have no training images; "
            "fine-tuning and probes cannot learn them. Add training images or remove those test folders."
        )


def _validate(spec, items, index, split, max_per_class, progress):
    """Read and check every image (or the first ``max_per_class`` readable ones of each class)."""
    from tqdm.auto import tqdm

    by_class: dict[str, list] = {}
    for it in sorted(items, key=lambda t: _uid_order(t[0])):
        by_class.setdefault(spec.class_for_key(it[1]), []).append(it)
    good, bad = [], []
    with tqdm(total=len(items) if max_per_class is None else sum(min(len(v), max_per_class)
                                                                    for v in by_class.values()),
              desc=f"{spec.name}: checking {split} images", disable=not progress, leave=False) as bar:
        for name, its in by_class.items():
            kept = 0
            for uid, _key, loader in its:
                if max_per_class is not None and kept >= max_per_class:
                    break
                try:
                    data = loader()
                except OSError:
                    data = None
                if data is None or not _check_image(data):
                    bad.append(uid)
                    continue
                good.append(Sample(uid, index[name], loader, hashlib.sha256(data).hexdigest()))
                kept += 1
                bar.update(1)
    return sorted(good, key=lambda x: x.uid), sorted(bad)


def _duplicates(splits) -> list[tuple[str, str]]:
    """Pairs (train uid, test uid) of byte-identical images: a test image the model may have trained on."""
    train = {}
    for x in splits["train"]:
        train.setdefault(x.sha256, x.uid)
    return [(train[x.sha256], x.uid) for x in splits["test"] if x.sha256 in train]


def stratified_holdout(uids_labels: list[tuple[str, str]], fraction: float) -> set[str]:
    """Deterministic stratified hold-out by uid hash: the ``fraction`` of each class whose hashes sort first."""
    by_class: dict[str, list[str]] = {}
    for uid, label in uids_labels:
        by_class.setdefault(label, []).append(uid)
    held = set()
    for uids in by_class.values():
        uids = sorted(uids, key=_uid_order)
        held.update(uids[: max(1, round(len(uids) * fraction))])
    return held
