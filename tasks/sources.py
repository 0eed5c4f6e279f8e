"""Where task images come from: a local image folder, an installed package, scikit-learn, the HF hub, or by hand."""

from __future__ import annotations

import importlib
import io
from pathlib import Path

from benchmark.errors import DataError
from benchmark.splits import stratified_holdout
from benchmark.storage.hub import hub_endpoint, hub_reachable

from .spec import SPLITS, RawSplit, Source

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _reader(path: Path):
    return lambda: path.read_bytes()


def _scan_class_folders(root: Path) -> tuple[list[tuple[str, str, object]], list[str]]:
    """Image files under ``root/<class>/`` (any depth), and the class folders that hold none."""
    items, empty = [], []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        n = len(items)
        for f in sorted(class_dir.rglob("*")):
            if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
                items.append((f"{root.name}/{class_dir.name}/{f.relative_to(class_dir).as_posix()}",
                              class_dir.name, _reader(f)))
        if len(items) == n:
            empty.append(class_dir.name)
    return items, empty


class ImageFolderSource(Source):
    """``<root>/train/<class>/*`` and ``<root>/test/<class>/*``; class folder names are normalised."""

    kind = "folder"

    def __init__(self, root: str | Path | None = None, train: str = "train", test: str = "test"):
        self.root = Path(root) if root else None
        self.split_dirs = {"train": train, "test": test}

    def describe(self) -> str:
        return f"image folder {self.root}" if self.root else "a local image folder (--data-dir)"

    def load(self, data_dir):
        root = Path(data_dir or self.root or "").expanduser()
        if not str(root) or not root.is_dir():
            raise DataError(
                f"Data folder {str(root)!r} does not exist. Pass --data-dir DIR with DIR/train/<class>/*.jpg "
                "and DIR/test/<class>/*.jpg."
            )
        out = {}
        for split, name in self.split_dirs.items():
            d = root / name
            if not d.is_dir():
                raise DataError(
                    f"Data folder {str(root)!r} has no {name!r} sub-folder. Expected layout: "
                    f"{root}/{self.split_dirs['train']}/<class>/*.jpg and {root}/{self.split_dirs['test']}/<class>/*.jpg."
                )
            items, empty = _scan_class_folders(d)
            if not items:
                raise DataError(f"Data folder {str(d)!r} holds no images in class sub-folders ({name}/<class>/*.jpg).")
            if empty:
                raise DataError(
                    f"Class folder(s) {empty} in {str(d)!r} hold no images (looked for "
                    f"{', '.join(sorted(IMAGE_SUFFIXES))}). Add images or remove the empty folders."
                )
            out[split] = RawSplit(items)
        return out


class PackageFolderSource(Source):
    """Class folders shipped inside an installed package, split deterministically (no official split)."""

    kind = "package"

    def __init__(self, package: str, root_fn: str, extra: str, test_fraction: float = 0.2):
        self.package, self.root_fn, self.extra, self.test_fraction = package, root_fn, extra, test_fraction

    def describe(self) -> str:
        return f"installed package {self.package!r}"

    def load(self, data_dir):
        try:
            mod = importlib.import_module(self.package.replace("-", "_"))
        except ImportError:
            raise DataError(
                f"This task needs the package {self.package!r}. Install it with "
                f"`pip install 'projbench[{self.extra}]'` (or `pip install {self.package}`)."
            ) from None
        root = Path(getattr(mod, self.root_fn)())
        items = []
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            for f in sorted(class_dir.iterdir()):
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    items.append((f"{class_dir.name}/{f.name}", class_dir.name, _reader(f)))
        return _split_by_hash(items, self.test_fraction)


class SklearnDigitsSource(Source):
    """scikit-learn's 8x8 handwritten digits (UCI), upscaled to 32x32 RGB PNGs, split deterministically."""

    kind = "package"

    def describe(self) -> str:
        return "scikit-learn load_digits (UCI optical digits, 1797 images)"

    def load(self, data_dir):
        import numpy as np
        from PIL import Image
        from sklearn.datasets import load_digits

        digits = load_digits()

        def encode(img8):
            arr = (255 - img8 * (255 / 16)).clip(0, 255).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr, "L").resize((32, 32), Image.NEAREST).save(buf, format="PNG")
            return buf.getvalue()

        items = [
            (f"digits/{i:04d}", str(int(t)), (lambda im=im: encode(im)))
            for i, (im, t) in enumerate(zip(digits.images, digits.target, strict=True))
        ]
        return _split_by_hash(items, 0.2)


def _split_by_hash(items, test_fraction):
    test = stratified_holdout([(uid, key) for uid, key, _ in items], test_fraction)
    return {
        "train": RawSplit([it for it in items if it[0] not in test]),
        "test": RawSplit([it for it in items if it[0] in test]),
    }


class HFDatasetSource(Source):
    """A Hugging Face dataset (one dataset id per split, pinned revision), loaded with ``datasets``.

    Image bytes stay in the Arrow cache and are read per sample, so a large split is never held in memory.
    """

    kind = "hf"

    def __init__(self, splits: dict[str, tuple[str, str, str | None]], image_column="image", label_column="label",
                 config: str | None = None):
        # splits: {"train": (dataset_id, split_name, revision), "test": (...)}; revision None = the main branch
        self.splits, self.image_column, self.label_column = splits, image_column, label_column
        self.config = config

    def describe(self) -> str:
        cfg = f"/{self.config}" if self.config else ""
        return ", ".join(f"{s}: hf://{d}{cfg}[{sp}]@{r or 'main'}" for s, (d, sp, r) in self.splits.items())

    def load(self, data_dir):
        import datasets

        if not hub_reachable():
            ids = sorted({d for d, _, _ in self.splits.values()})
            raise DataError(
                f"Could not fetch this task's data {ids}: the dataset hub ({hub_endpoint()}) is not reachable from "
                f"this machine.\n{LOCAL_FIX}"
            )
        out = {}
        for split in SPLITS:
            ds_id, ds_split, revision = self.splits[split]
            try:
                ds = datasets.load_dataset(ds_id, self.config, split=ds_split, revision=revision)
            except Exception as exc:  # missing, renamed, gated...
                raise DataError(
                    f"Could not fetch the {split} data of this task from the dataset hub ({ds_id!r}, split "
                    f"{ds_split!r}): {type(exc).__name__}: {str(exc)[:200]}\n{LOCAL_FIX}"
                ) from None
            out[split] = RawSplit(self._items(ds, f"{ds_id}/{ds_split}"))
        return out

    def _items(self, ds, prefix: str):
        import datasets

        missing = [c for c in (self.image_column, self.label_column) if c not in ds.column_names]
        if missing:
            raise DataError(f"Dataset {prefix} has no column(s) {missing} (columns: {ds.column_names}).")
        ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        names = getattr(ds.features[self.label_column], "names", None)
        labels = ds[self.label_column]  # one column read; the images are not touched here
        images = ds.select_columns([self.image_column])

        def reader(i):
            img = images[i][self.image_column]
            return img["bytes"] if img.get("bytes") else Path(img["path"]).read_bytes()

        return [(f"{prefix}/{i:06d}", names[y] if names else str(y), (lambda i=i: reader(i)))
                for i, y in enumerate(labels)]


class ManualSource(Source):
    """A dataset with no maintained hub copy: loading explains where to get it and how to pass it in."""

    kind = "manual"

    def __init__(self, where: str, how: str):
        self.where, self.how = where, how

    def describe(self) -> str:
        return f"manual download ({self.where}); pass --data-dir"

    def load(self, data_dir):
        raise DataError(f"This task's images have no maintained copy on the dataset hub. {self.how}\n{LOCAL_FIX}")


LOCAL_FIX = ("Fix: get the images where they are reachable and pass --data-dir DIR with DIR/train/<class>/*.jpg and "
             "DIR/test/<class>/*.jpg.")
