"""Built-in offline and generic tasks, as readable data (the paper's domains are in paper.py).

Registered through the same hook as third-party tasks.
"""

from __future__ import annotations

from .sources import ImageFolderSource, PackageFolderSource, SklearnDigitsSource
from .spec import TaskSpec

TEXTILE = TaskSpec(
    name="textile",
    version="1.0",
    domain="textile surface defects",
    classes=("nominal", "global defect", "local defect"),
    class_keys={"nominal": "nominal", "global": "global defect", "local": "local defect"},
    source=PackageFolderSource("conformal-clip-data", "textile_simulated_root", extra="demo"),
    description="Textile quality control: 2,000 250x250 fabric photos (nominal / global defect / local defect), "
                "fixed stratified 80/20 split by file-name hash. Offline: ships in the conformal-clip-data package.",
    citation="Megahed et al. 2025, arXiv:2501.12596 (conformal-clip-data).",
    license="MIT",
)

DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

DIGITS = TaskSpec(
    name="digits",
    version="1.0",
    domain="handwritten digits",
    classes=DIGIT_WORDS,
    class_keys={str(i): word for i, word in enumerate(DIGIT_WORDS)},  # sklearn's targets 0-9
    source=SklearnDigitsSource(),
    description="UCI optical handwritten digits as shipped by scikit-learn (1,797 8x8 images), fixed 80/20 split.",
    citation="Alpaydin & Kaynak, UCI ML Repository: Optical Recognition of Handwritten Digits (1998).",
    license="CC BY 4.0",
)

FOLDER = TaskSpec(
    name="folder",
    version="1.0",
    domain="images",
    classes=(),
    source=ImageFolderSource(),
    description="Any local image folder: --data-dir DIR with DIR/train/<class>/* and DIR/test/<class>/*; "
                "class names from folder names; --domain sets the prompt's domain phrase.",
)

TASKS = [TEXTILE, DIGITS, FOLDER]
