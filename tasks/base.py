"""Loading a task: a :class:`~.spec.TaskSpec` and its source become a :class:`~.spec.TaskData`.

The train and test samples (validated, optionally limited per class), the label space actually present, what was
skipped or excluded, images shared by train and test, and a content fingerprint used as the feature-cache key.
The declarative types live in :mod:`.spec`; they are re-exported here.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import replace
from pathlib import Path

from PIL import Image

from benchmark.errors import DataError
from benchmark.splits import uid_order

from .sources import ImageFolderSource
from .spec import SPLITS, RawSplit, Sample, Source, TaskData, TaskSpec, normalize_class_name

__all__ = ["SPLITS", "DECODE_VERSION", "RawSplit", "Sample", "Source", "TaskData", "TaskSpec", "decode_image",
           "load_task", "normalize_class_name"]

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
    """Load, validate and fingerprint a task.

    Unreadable images are skipped and counted, never fatal. Inconsistent label spaces (folders matching no
    class, two folders normalising to one class, a test class without training images, an empty class) are
    a :class:`DataError` that names the classes. ``max_per_class`` keeps the first ``k`` *readable* images
    of every class (in uid-hash order), so a corrupt file does not unbalance a quick run.
    """

    source = (spec.local_source or ImageFolderSource()) if data_dir is not None else spec.source
    where = data_dir or source.describe()
    items, excluded = _read_items(spec, source, data_dir=data_dir, where=where)
    if not spec.classes:  # a generic folder task: the label space is the class folders
        spec = _spec_from_folders(spec, items, where)
    _check_label_space(spec, items, where)

    train_names = {spec.class_for_key(k) for _, k, _ in items["train"]}
    classes = [c for c in spec.classes if c in train_names]
    index = {c: i for i, c in enumerate(classes)}
    splits, skipped = {}, {}
    for split in SPLITS:
        splits[split], skipped[split] = _validate(spec, items[split], index=index, split=split,
                                                  max_per_class=max_per_class, progress=progress)
    _check_readable(spec, classes, splits, skipped)
    return TaskData(
        spec=spec,
        classes=classes,
        splits=splits,
        fingerprint=_fingerprint(spec, classes, splits),
        skipped=skipped,
        missing_classes=[c for c in spec.classes if c not in train_names],
        limit={"max_per_class": max_per_class} if max_per_class is not None else None,
        source_description=str(data_dir) if data_dir is not None else source.describe(),
        duplicates=_duplicates(splits),
        excluded={s: v for s, v in excluded.items() if v},
    )


def _read_items(spec: TaskSpec, source, *, data_dir: Path | None, where) -> tuple[dict, dict]:
    """The source's raw items per split, less the class keys the task leaves out (counted as excluded)."""
    raw = source.load(data_dir)
    for split in SPLITS:
        if split not in raw or not raw[split].items:
            raise DataError(f"Task {spec.name!r}: no {split} images found in {where}.")
    excluded = {s: dict(raw[s].dropped) for s in SPLITS}
    leave_out = {normalize_class_name(k) for k in spec.exclude_keys}
    items = {}
    for s in SPLITS:
        items[s] = [it for it in raw[s].items if normalize_class_name(it[1]) not in leave_out]
        for it in raw[s].items:
            if normalize_class_name(it[1]) in leave_out:
                excluded[s][it[1]] = excluded[s].get(it[1], 0) + 1
    return items, excluded


def _check_readable(spec: TaskSpec, classes: list[str], splits: dict, skipped: dict) -> None:
    """Every class keeps a readable training image and the test split a readable image, or a DataError."""
    empty = [c for i, c in enumerate(classes) if not any(x.label == i for x in splits["train"])]
    if empty:
        raise DataError(
            f"Task {spec.name!r}: every training image of class(es) {empty} was unreadable "
            f"({sum(len(v) for v in skipped.values())} unreadable file(s) in total). Replace the broken files."
        )
    if not splits["test"]:
        raise DataError(f"Task {spec.name!r}: every test image was unreadable ({len(skipped['test'])}).")


def _fingerprint(spec: TaskSpec, classes: list[str], splits: dict) -> str:
    """The feature-cache key: the task's definition, the image decoding and every (split, uid, label, bytes)."""
    digest = hashlib.sha256(repr((spec.name, spec.version, spec.domain, classes)).encode())
    digest.update(f"decode {DECODE_VERSION}\n".encode())
    for split in SPLITS:
        for x in splits[split]:
            digest.update(f"{split}\t{x.uid}\t{x.label}\t{x.sha256}\n".encode())
    return digest.hexdigest()[:16]


def _spec_from_folders(spec: TaskSpec, items, where) -> TaskSpec:
    keys = sorted({k for s in SPLITS for _, k, _ in items[s]})
    names = [normalize_class_name(k) for k in keys]
    empty = [k for k, n in zip(keys, names, strict=True) if not n]
    if empty:
        raise DataError(
            f"Class folder(s) {empty} in {where} give an empty class name (separators and spaces only). "
            "Rename each to the class it holds, e.g. 'cracked_tile'.")
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


def _validate(spec, items, *, index, split, max_per_class, progress):
    """Read and check every image (or the first ``max_per_class`` readable ones of each class)."""
    from tqdm.auto import tqdm

    by_class: dict[str, list] = {}
    for it in sorted(items, key=lambda t: uid_order(t[0])):
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
