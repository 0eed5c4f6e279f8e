"""Native layouts of the paper's datasets, so a user can point --data-dir at the release as downloaded.

* DTD: ``images/<class>/*.jpg`` with the official split lists ``labels/train<k>.txt`` / ``labels/test<k>.txt``
  (the paper used split 1). Without ``labels/`` it falls back to ``train/<class>/`` and ``test/<class>/``.
* CrisisMMD v2.0: the humanitarian task with *image* labels, either from the official split files
  (``task_humanitarian_text_img_{train,test}.tsv``, column ``label_image``) or from the QCRI copy on the hub
  (``humanitarian/{train,test}.json`` for the split, ``files_individual_events/*.tsv`` column ``image_human`` for
  the image label). The hub copy's own ``label`` column is not used: the CrisisMMD split readme says it mixes
  text and image labels, and this task classifies images.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from benchmark.errors import DataError
from benchmark.storage.hub import hub_endpoint, hub_reachable

from .sources import LOCAL_FIX, ImageFolderSource
from .spec import SPLITS, RawSplit, Source

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # tweets are short, but a stray quote can swallow lines


def _reader(path: Path):
    return lambda: path.read_bytes()


class DTDSplitSource(Source):
    """DTD's own layout and split lists; a plain train/test class-folder tree works too."""

    kind = "folder"

    def __init__(self, split_id: int = 1):
        self.split_id = split_id

    def describe(self) -> str:
        return f"DTD folder (images/ + labels/train{self.split_id}.txt, test{self.split_id}.txt) or train/ + test/"

    def load(self, data_dir):
        root = Path(data_dir or "").expanduser()
        if (root / "dtd" / "labels").is_dir():
            root = root / "dtd"
        lists = {s: root / "labels" / f"{s}{self.split_id}.txt" for s in SPLITS}
        if not all(p.is_file() for p in lists.values()):
            return ImageFolderSource().load(data_dir)
        out = {}
        for split, path in lists.items():
            items = []
            for line in path.read_text().split():
                cls = line.split("/", 1)[0]
                # A listed file that is missing surfaces as an unreadable image (skipped and counted).
                items.append((f"dtd/{line}", cls, _reader(root / "images" / line)))
            out[split] = RawSplit(items)
        return out


class CrisisMMDSource(Source):
    """CrisisMMD v2.0, one task (default: humanitarian), image labels; from the hub or a local copy."""

    kind = "hf"
    _SPLIT_FILES = {"train": "train", "test": "test"}  # the dev split is not used (the paper used train/test)

    def __init__(self, repo_id: str, revision: str | None, task: str = "humanitarian"):
        self.repo_id, self.revision, self.task = repo_id, revision, task

    def describe(self) -> str:
        return (f"hf://{self.repo_id}@{self.revision or 'main'} (CrisisMMD v2.0 {self.task} train/test, image labels)")

    def load(self, data_dir):
        if data_dir is not None:
            root = Path(data_dir).expanduser()
            found = read_crisismmd(root, self.task)
            return found if found is not None else ImageFolderSource().load(root)
        root = self._download()
        found = read_crisismmd(root, self.task)
        if found is None:
            raise DataError(f"The download of {self.repo_id} at {self.revision} does not have the expected layout.")
        return found

    def _download(self) -> Path:
        from huggingface_hub import snapshot_download

        if not hub_reachable():
            raise DataError(
                f"Could not fetch this task's data ['{self.repo_id}']: the dataset hub ({hub_endpoint()}) is not "
                f"reachable from this machine.\n{LOCAL_FIX} The CrisisMMD v2.0 release folder (with "
                "crisismmd_datasplit_all/ and data_image/) also works as DIR."
            )
        try:
            path = snapshot_download(self.repo_id, repo_type="dataset", revision=self.revision,
                                     allow_patterns=[f"{self.task}/*", "files_individual_events/*", "data_image/**"])
        except Exception as exc:
            raise DataError(f"Could not download {self.repo_id}: {type(exc).__name__}: {str(exc)[:200]}\n{LOCAL_FIX}"
                            ) from None
        return Path(path)


def read_crisismmd(root: Path, task: str) -> dict[str, RawSplit] | None:
    """Items per split from a CrisisMMD folder in either native layout, or None if it is in neither."""
    for d in [root, *sorted(p for p in root.iterdir() if p.is_dir())] if root.is_dir() else []:
        if all((d / f"task_{task}_text_img_{s}.tsv").is_file() for s in SPLITS):
            return _from_split_tsvs(d, root, task)
    if all((root / task / f"{s}.json").is_file() for s in SPLITS) and (root / "files_individual_events").is_dir():
        return _from_hub_layout(root, task)
    return None


def _read_tsv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def _image_root(candidates: list[Path]) -> Path:
    for c in candidates:
        if (c / "data_image").is_dir():
            return c
    return candidates[0]


def _from_split_tsvs(tsv_dir: Path, root: Path, task: str) -> dict[str, RawSplit]:
    """Official split files: image path in ``image``, the image's own label in ``label_image``."""
    base = _image_root([root, tsv_dir, tsv_dir.parent, *[p for p in root.iterdir() if p.is_dir()]])
    out = {}
    for split in SPLITS:
        rows = _read_tsv(tsv_dir / f"task_{task}_text_img_{split}.tsv")
        if rows and "label_image" not in rows[0]:
            raise DataError(f"{tsv_dir / f'task_{task}_text_img_{split}.tsv'} has no label_image column.")
        out[split] = _items(rows, split, "image", "label_image", base)
    return out


def _from_hub_layout(root: Path, task: str) -> dict[str, RawSplit]:
    """The QCRI hub copy: split membership from ``<task>/<split>.json``, image labels from the annotations."""
    column = {"humanitarian": "image_human", "informative": "image_info", "damage": "image_damage"}[task]
    labels, paths = {}, {}
    for tsv in sorted((root / "files_individual_events").glob("*.tsv")):
        for row in _read_tsv(tsv):
            labels[row["image_id"]] = row.get(column) or ""
            paths[row["image_id"]] = row.get("image_path") or ""
    out = {}
    for split in SPLITS:
        rows = []
        for rec in _read_json_records(root / task / f"{split}.json"):
            image_id = str(rec["image_id"])
            rows.append({"image_id": image_id, "image": rec.get("image_path") or paths.get(image_id, ""),
                         "label_image": labels.get(image_id, "")})
        out[split] = _items(rows, split, "image", "label_image", root)
    return out


def _read_json_records(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8").strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]  # JSON lines


def _items(rows, split, path_col, label_col, base: Path) -> RawSplit:
    items, dropped, seen = [], {}, set()
    for row in rows:
        label, rel, image_id = (row.get(label_col) or "").strip(), (row.get(path_col) or "").strip(), row["image_id"]
        if not label or label.lower() in ("nan", "null", "none"):
            dropped["no image label"] = dropped.get("no image label", 0) + 1
            continue
        if image_id in seen:  # one row per image; a tweet's text may repeat, its images do not
            dropped["repeated image id"] = dropped.get("repeated image id", 0) + 1
            continue
        seen.add(image_id)
        items.append((f"crisismmd/{split}/{image_id}", label, _reader(base / rel)))
    return RawSplit(items, dropped)
