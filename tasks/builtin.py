"""Built-in task definitions, as readable data. Registered through the same hook as third-party tasks."""

from __future__ import annotations

from .base import TaskSpec
from .sources import HFDatasetSource, ImageFolderSource, PackageFolderSource, SklearnDigitsSource

# DermNet (Kaggle "shubhamgoel27/dermnet" layout): folder name -> class name used in the prompt.
DERM_FOLDERS = {
    "Acne and Rosacea Photos": "acne and rosacea",
    "Actinic Keratosis Basal Cell Carcinoma and other Malignant Lesions":
        "actinic keratosis, basal cell carcinoma and other malignant lesions",
    "Atopic Dermatitis Photos": "atopic dermatitis",
    "Bullous Disease Photos": "bullous disease",
    "Cellulitis Impetigo and other Bacterial Infections": "cellulitis, impetigo and other bacterial infections",
    "Eczema Photos": "eczema",
    "Exanthems and Drug Eruptions": "exanthems and drug eruptions",
    "Hair Loss Photos Alopecia and other Hair Diseases": "hair loss, alopecia and other hair diseases",
    "Herpes HPV and other STDs Photos": "herpes, hpv and other stds",
    "Light Diseases and Disorders of Pigmentation": "light diseases and disorders of pigmentation",
    "Lupus and other Connective Tissue diseases": "lupus and other connective tissue diseases",
    "Melanoma Skin Cancer Nevi and Moles": "melanoma skin cancer, nevi and moles",
    "Nail Fungus and other Nail Disease": "nail fungus and other nail disease",
    "Poison Ivy Photos and other Contact Dermatitis": "poison ivy and other contact dermatitis",
    "Psoriasis pictures Lichen Planus and related diseases": "psoriasis, lichen planus and related diseases",
    "Scabies Lyme Disease and other Infestations and Bites": "scabies, lyme disease and other infestations and bites",
    "Seborrheic Keratoses and other Benign Tumors": "seborrheic keratoses and other benign tumors",
    "Systemic Disease": "systemic disease",
    "Tinea Ringworm Candidiasis and other Fungal Infections":
        "tinea, ringworm, candidiasis and other fungal infections",
    "Urticaria Hives": "urticaria (hives)",
    "Vascular Tumors": "vascular tumors",
    "Vasculitis Photos": "vasculitis",
    "Warts Molluscum and other Viral Infections": "warts, molluscum and other viral infections",
}

DERM = TaskSpec(
    name="derm",
    version="1.0",
    domain="skin diseases",
    classes=tuple(DERM_FOLDERS.values()),
    class_keys=DERM_FOLDERS,
    source=HFDatasetSource(
        {
            "train": ("rkdeva/Dermnet-Train", "train", None),
            "test": ("rkdeva/Dermnet-Test-1", "train", "16bcee0fb27069c1a7e867efce5ef12a9f72d845"),
        },
        image_column="image",
        label_column="label",
    ),
    description="Dermatology: DermNet, 23 disease categories (Kaggle layout, ~15.5k train / ~4k test images).",
    citation="DermNet, https://dermnet.com; Kaggle dataset shubhamgoel27/dermnet (Shubham Goel).",
    license="DermNet images: non-commercial research use.",
)

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

DIGITS = TaskSpec(
    name="digits",
    version="1.0",
    domain="handwritten digits",
    classes=("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    class_keys={str(i): w for i, w in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"))},
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

TASKS = [DERM, TEXTILE, DIGITS, FOLDER]
