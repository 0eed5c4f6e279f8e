"""What a task is, as data: its declarative definition and what loading it yields.

A :class:`TaskSpec` says what the task is (name, version, the domain phrase of the prompt, class names) and
where its images come from (a :class:`Source`, which yields :class:`RawSplit` items). Loading it
(:func:`benchmark.tasks.base.load_task`) gives a :class:`TaskData`. Sources and the loader both build on this
module; it imports neither.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.names import nfc

SPLITS = ("train", "test")


def normalize_class_name(folder: str) -> str:
    """Folder name -> human-readable class name: separators and CamelCase become spaces, case is folded.

    "Bell_pepper leaf" -> "bell pepper leaf"; "AnnualCrop" -> "annual crop"; "polka-dotted" -> "polka dotted".
    Unicode is normalised to NFC first (:mod:`benchmark.names`). A name of separators only ("___") becomes "",
    which the task loader refuses.
    """
    name = re.sub(r"[_\-]+", " ", nfc(folder))  # one spelling: "café" in NFD and NFC is one class
    name = re.sub(r"(?<=[a-z])(?=[A-Z][a-z])", " ", name)          # AnnualCrop -> Annual Crop
    name = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z]{2,})", " ", name)      # HPVInfection -> HPV Infection, not "ST Ds"
    return re.sub(r"\s+", " ", name).strip().lower()


@dataclass(frozen=True)
class Sample:
    uid: str                         # stable identifier (relative path, dataset index, ...)
    label: int                       # index into TaskData.classes
    load_bytes: Callable[[], bytes]  # the encoded image, read lazily
    sha256: str = ""                 # of the encoded image


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
