"""The paper's four domains (Verma et al. 2024) plus EuroSAT, defined from their original releases.

Class names are the datasets' own folder/label names, normalised (``normalize_class_name``) so that word
boundaries survive ("Bell_pepper leaf" -> "bell pepper leaf", "AnnualCrop" -> "annual crop"); DermNet and
CrisisMMD use an explicit mapping. Hub ids and revisions, and why they were chosen, are in docs/tasks.md.
"""

from __future__ import annotations

from .native import CrisisMMDSource, DTDSplitSource
from .sources import HFDatasetSource, ManualSource
from .spec import TaskSpec, normalize_class_name

# ---------------------------------------------------------------------------------------------------------
# Agriculture: PlantDoc, cropped-leaf classification set (github.com/pratikkayal/PlantDoc-Dataset), its own
# train/ and test/ folders. 28 training classes; "Tomato two spotted spider mites leaf" has 2 training images
# and no test folder, so it is in the label space but not in the test macro-F1.
PLANTDOC_FOLDERS = (
    "Apple Scab Leaf", "Apple leaf", "Apple rust leaf", "Bell_pepper leaf", "Bell_pepper leaf spot",
    "Blueberry leaf", "Cherry leaf", "Corn Gray leaf spot", "Corn leaf blight", "Corn rust leaf", "Peach leaf",
    "Potato leaf early blight", "Potato leaf late blight", "Raspberry leaf", "Soyabean leaf",
    "Squash Powdery mildew leaf", "Strawberry leaf", "Tomato Early blight leaf", "Tomato Septoria leaf spot",
    "Tomato leaf", "Tomato leaf bacterial spot", "Tomato leaf late blight", "Tomato leaf mosaic virus",
    "Tomato leaf yellow virus", "Tomato mold leaf", "Tomato two spotted spider mites leaf", "grape leaf",
    "grape leaf black rot",
)
PLANTDOC_COMMIT = "3f08481677ad637c7f3e3cb41127feab0635b6c6"  # commit of the image files as indexed

AGRI = TaskSpec(
    name="agri",
    version="1.0",
    domain="plant leaf diseases",
    classes=tuple(normalize_class_name(f) for f in PLANTDOC_FOLDERS),
    source=ManualSource(
        "github.com/pratikkayal/PlantDoc-Dataset",
        "Get PlantDoc (cropped classification set) with `git clone https://github.com/pratikkayal/PlantDoc-Dataset` "
        f"(image files as of commit {PLANTDOC_COMMIT[:10]}) and pass --data-dir PlantDoc-Dataset: its train/ and "
        "test/ folders are the standard split.",
    ),
    description="Agriculture: PlantDoc leaf images (13 species, healthy leaves and 17 diseases), 28 classes, "
                "standard train/test folders (~2.3k / ~0.24k images).",
    citation="Singh, Jain, Jain, Kayal, Kumawat, Batra. PlantDoc: A Dataset for Visual Plant Disease Detection. "
             "CoDS-COMAD 2020, doi:10.1145/3371158.3371196.",
    license="CC BY 4.0",
)

# ---------------------------------------------------------------------------------------------------------
# Textures: DTD split 1 (train1 / test1, 40 images per class each), 47 classes.
DTD_CLASSES = (
    "banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked", "crosshatched",
    "crystalline", "dotted", "fibrous", "flecked", "freckled", "frilly", "gauzy", "grid", "grooved", "honeycombed",
    "interlaced", "knitted", "lacelike", "lined", "marbled", "matted", "meshed", "paisley", "perforated",
    "pitted", "pleated", "polka-dotted", "porous", "potholed", "scaly", "smeared", "spiralled", "sprinkled",
    "stained", "stratified", "striped", "studded", "swirly", "veined", "waffled", "woven", "wrinkled",
    "zigzagged",
)

TEXTURES = TaskSpec(
    name="textures",
    version="1.0",
    domain="textures",
    classes=tuple(normalize_class_name(c) for c in DTD_CLASSES),
    # Uploaded by DTD's first author; train/validation/test = DTD's train1/val1/test1. The main branch was at
    # 86b625a when looked up; its full commit id is not recorded yet, so it is not pinned here.
    source=HFDatasetSource({"train": ("mcimpoi/dtd_split_1", "train", None),
                            "test": ("mcimpoi/dtd_split_1", "test", None)}),
    local_source=DTDSplitSource(split_id=1),
    description="Textures: Describable Textures Dataset, 47 classes, split 1 (train1: 1,880 / test1: 1,880 images).",
    citation="Cimpoi, Maji, Kokkinos, Mohamed, Vedaldi. Describing Textures in the Wild. CVPR 2014.",
    license="Research use (DTD terms; images remain with their owners). Hub copy tagged CC BY 4.0.",
)

# ---------------------------------------------------------------------------------------------------------
# Dermatology: DermNet (Kaggle "shubhamgoel27/dermnet" layout): folder name -> class name used in the prompt.
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
    # The Kaggle train and test folders as two hub datasets (15,297 / 3,937 images; label = folder name as a
    # string). Test-1 is pinned; Train's main branch was at 44a4660 when looked up (full id not resolvable).
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

# ---------------------------------------------------------------------------------------------------------
# Humanitarian: CrisisMMD v2.0 humanitarian task, image labels, 4 classes. The 4-class image scheme is the one
# of Alam et al. (ASONAM 2020): the rare people-related labels are merged, vehicle damage joins infrastructure
# damage. "other_relevant_information" has no place in 4 classes and is left out (counted as excluded).
CRISISMMD_HUMANITARIAN = {
    "affected_individuals": "affected, injured, or dead people",
    "injured_or_dead_people": "affected, injured, or dead people",
    "missing_or_found_people": "affected, injured, or dead people",
    "affected_injured_or_dead_people": "affected, injured, or dead people",   # the ASONAM 2020 / MEDIC name
    "infrastructure_and_utility_damage": "infrastructure and utility damage",
    "vehicle_damage": "infrastructure and utility damage",
    "not_humanitarian": "not humanitarian",
    "not_relevant_or_cant_judge": "not humanitarian",      # the v1.0 name of "not_humanitarian"
    "rescue_volunteering_or_donation_effort": "rescue, volunteering, or donation effort",
}
HUMANITARIAN_CLASSES = ("affected, injured, or dead people", "infrastructure and utility damage",
                        "not humanitarian", "rescue, volunteering, or donation effort")
_crisismmd = CrisisMMDSource("QCRI/CrisisMMD", "10a5626ba112ab9c50369c473a2062bcf205d708", task="humanitarian")

HUMANITARIAN = TaskSpec(
    name="humanitarian",
    version="1.0",
    domain="humanitarian disaster response",
    classes=HUMANITARIAN_CLASSES,
    class_keys={**CRISISMMD_HUMANITARIAN, **{c: c for c in HUMANITARIAN_CLASSES}},
    exclude_keys=("other_relevant_information",),
    source=_crisismmd,
    local_source=_crisismmd,
    description="Humanitarian: CrisisMMD v2.0 tweet images from 7 natural disasters of 2017, humanitarian "
                "categories of the image (label_image), 4 classes; official train/test split.",
    citation="Alam, Ofli, Imran. CrisisMMD: Multimodal Twitter Datasets from Natural Disasters. ICWSM 2018. "
             "4-class image scheme: Alam, Ofli, Imran, Alam, Qazi. ASONAM 2020.",
    license="CC BY-NC-SA 4.0",
)

# ---------------------------------------------------------------------------------------------------------
# Remote sensing: EuroSAT RGB, 10 classes; timm's copy carries the train/validation/test split of Neumann et
# al. (google-research remote_sensing_representations): 16,200 / 5,400 / 5,400. Train and test are used.
EUROSAT_FOLDERS = ("AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture",
                   "PermanentCrop", "Residential", "River", "SeaLake")

EUROSAT = TaskSpec(
    name="eurosat",
    version="1.0",
    domain="land use and land cover in satellite images",
    classes=tuple(normalize_class_name(f) for f in EUROSAT_FOLDERS),
    source=HFDatasetSource({"train": ("timm/eurosat-rgb", "train", "b4e28552cd5f3932b6abc37eb20d3e84901ad728"),
                            "test": ("timm/eurosat-rgb", "test", "b4e28552cd5f3932b6abc37eb20d3e84901ad728")}),
    description="Remote sensing: EuroSAT RGB, 64x64 Sentinel-2 patches, 10 land use / land cover classes "
                "(16,200 train / 5,400 test).",
    citation="Helber, Bischke, Dengel, Borth. EuroSAT: A Novel Dataset and Deep Learning Benchmark for Land Use "
             "and Land Cover Classification. IEEE JSTARS 2019.",
    license="MIT (EuroSAT release); imagery: Copernicus Sentinel-2 data.",
)

TASKS = [AGRI, TEXTURES, DERM, HUMANITARIAN, EUROSAT]
