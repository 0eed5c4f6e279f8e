"""Task definitions and loaders, on folders the tests write themselves (tiny PNG/JPEG files made with PIL)."""

from __future__ import annotations

import io
import json
from itertools import count

import pytest
from PIL import Image

from benchmark.errors import DataError
from benchmark.registry import Plugins
from benchmark.tasks import load_task, normalize_class_name
from benchmark.tasks.base import decode_image
from benchmark.tasks.native import CrisisMMDSource

_pixel = count(1)


def image_bytes(mode="RGB", fmt="PNG", size=(6, 5)) -> bytes:
    """A small image whose pixels differ from every other call's, so no two files are duplicates by accident."""
    n = next(_pixel)
    values = {"RGB": (n % 256, n // 256 % 256, 7), "L": n % 256, "RGBA": (n % 256, 9, 9, 128),
              "CMYK": (n % 256, 3, 5, 0), "P": n % 256, "LA": (n % 256, 100), "I;16": n * 37 % 65536}[mode]
    img = Image.new(mode, size, values)
    img.putpixel((0, 0), values)  # and one pixel set explicitly, for modes whose fill could coincide
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def write_tree(root, layout: dict[str, dict[str, int]], fmt="PNG"):
    """layout: {split: {class folder: number of images}}."""
    for split, classes in layout.items():
        for cls, n in classes.items():
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (d / f"img{i}.{fmt.lower()}").write_bytes(image_bytes(fmt=fmt))
    return root


@pytest.fixture(scope="module")
def tasks():
    return Plugins(autoload=False).tasks


# -- definitions --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("folder, name", [
    ("Bell_pepper leaf", "bell pepper leaf"), ("AnnualCrop", "annual crop"), ("SeaLake", "sea lake"),
    ("HerbaceousVegetation", "herbaceous vegetation"), ("polka-dotted", "polka dotted"),
    ("Tomato Early blight leaf", "tomato early blight leaf"), ("Herpes HPV and other STDs Photos",
                                                               "herpes hpv and other stds photos"),
    ("HPVInfection", "hpv infection"), ("  grape__leaf ", "grape leaf"), ("not_humanitarian", "not humanitarian"),
])
def test_class_names_keep_word_boundaries(folder, name):
    assert normalize_class_name(folder) == name


@pytest.mark.parametrize("name, n_classes", [("agri", 28), ("textures", 47), ("derm", 23), ("humanitarian", 4),
                                             ("eurosat", 10)])
def test_paper_tasks_are_complete_definitions(tasks, name, n_classes):
    t = tasks.get(name)
    assert len(t.classes) == n_classes == len(set(t.classes))
    assert t.version and t.domain and t.citation and t.license and t.description
    assert all(c == c.strip().lower() for c in t.classes)


def test_hub_sources_are_named_and_pinned_where_known(tasks):
    assert "timm/eurosat-rgb" in tasks.get("eurosat").source.describe()
    assert "@b4e28552cd5f3932b6abc37eb20d3e84901ad728" in tasks.get("eurosat").source.describe()
    assert "QCRI/CrisisMMD@10a5626ba112ab9c50369c473a2062bcf205d708" in tasks.get("humanitarian").source.describe()
    assert "mcimpoi/dtd_split_1" in tasks.get("textures").source.describe()
    assert "16bcee0fb27069c1a7e867efce5ef12a9f72d845" in tasks.get("derm").source.describe()


def test_list_tasks_verbose_shows_citation_and_licence(capsys):
    from benchmark.cli import main

    assert main(["list", "tasks", "--verbose"]) == 0
    out = capsys.readouterr().out
    for needle in ("agri", "humanitarian", "eurosat", "PlantDoc", "CC BY-NC-SA 4.0", "Helber", "Cimpoi"):
        assert needle in out


def test_agri_without_data_dir_says_where_to_get_plantdoc(tasks):
    with pytest.raises(DataError, match="pratikkayal/PlantDoc-Dataset"):
        load_task(tasks.get("agri"), progress=False)


def test_humanitarian_offline_names_the_dataset(tasks, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="QCRI/CrisisMMD.*not reachable|not reachable.*QCRI/CrisisMMD"):
        load_task(tasks.get("humanitarian"), progress=False)


# -- folder layouts of the paper's datasets -----------------------------------------------------------------

def test_agri_plantdoc_folders(tasks, tmp_path):
    layout = {"train": {"Bell_pepper leaf": 2, "Apple Scab Leaf": 2, "Tomato two spotted spider mites leaf": 2,
                        "grape leaf black rot": 2},
              "test": {"Bell_pepper leaf": 1, "Apple Scab Leaf": 1, "grape leaf black rot": 1}}
    data = load_task(tasks.get("agri"), write_tree(tmp_path, layout), progress=False)
    assert data.classes == ["apple scab leaf", "bell pepper leaf", "tomato two spotted spider mites leaf",
                            "grape leaf black rot"]  # in the task's order, only those with training images
    assert len(data.missing_classes) == 28 - 4
    assert {data.classes[s.label] for s in data.splits["test"]} == {"apple scab leaf", "bell pepper leaf",
                                                                      "grape leaf black rot"}


def test_textures_dtd_release_layout_uses_split_lists(tasks, tmp_path):
    root = tmp_path / "dtd"
    for cls in ("banded", "polka-dotted"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(4):
            (root / "images" / cls / f"{cls}_{i:04d}.jpg").write_bytes(image_bytes(fmt="JPEG"))
    (root / "labels").mkdir()
    (root / "labels" / "train1.txt").write_text("banded/banded_0000.jpg\nbanded/banded_0001.jpg\n"
                                                "polka-dotted/polka-dotted_0000.jpg\npolka-dotted/polka-dotted_0001.jpg\n")
    (root / "labels" / "test1.txt").write_text("banded/banded_0002.jpg\npolka-dotted/polka-dotted_0003.jpg\n"
                                               "banded/banded_9999.jpg\n")  # listed but missing: skipped, counted
    data = load_task(tasks.get("textures"), tmp_path, progress=False)  # the folder holding dtd/ works too
    assert data.classes == ["banded", "polka dotted"]
    assert [s.uid for s in data.splits["test"]] == ["dtd/banded/banded_0002.jpg",
                                                    "dtd/polka-dotted/polka-dotted_0003.jpg"]
    assert data.skipped["test"] == ["dtd/banded/banded_9999.jpg"]


def test_textures_falls_back_to_train_test_folders(tasks, tmp_path):
    data = load_task(tasks.get("textures"), write_tree(tmp_path, {"train": {"banded": 2, "zigzagged": 2},
                                                                  "test": {"banded": 1, "zigzagged": 1}}),
                     progress=False)
    assert data.classes == ["banded", "zigzagged"]


def test_humanitarian_class_folders_merge_and_exclude(tasks, tmp_path):
    layout = {"train": {"affected_individuals": 1, "injured_or_dead_people": 1, "infrastructure_and_utility_damage": 2,
                        "vehicle_damage": 1, "not_humanitarian": 2, "rescue_volunteering_or_donation_effort": 2,
                        "other_relevant_information": 3},
              "test": {"injured_or_dead_people": 1, "vehicle_damage": 1, "not_humanitarian": 1,
                       "other_relevant_information": 1}}
    data = load_task(tasks.get("humanitarian"), write_tree(tmp_path, layout), progress=False)
    assert data.classes == list(tasks.get("humanitarian").classes)
    assert data.counts()["train"] == {"affected, injured, or dead people": 2, "infrastructure and utility damage": 3,
                                      "not humanitarian": 2, "rescue, volunteering, or donation effort": 2}
    assert data.excluded == {"train": {"other_relevant_information": 3}, "test": {"other_relevant_information": 1}}


def _crisismmd_images(root, ids):
    for image_id in ids:
        p = root / "data_image" / "hurricane_irma" / "10_9_2017" / f"{image_id}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(image_bytes(fmt="JPEG"))
    return {i: f"data_image/hurricane_irma/10_9_2017/{i}.jpg" for i in ids}


def test_humanitarian_official_split_files(tasks, tmp_path):
    """The CrisisMMD v2.0 release: split TSVs with the image's own label in ``label_image``."""
    rows = {"train": [("1_0", "vehicle_damage", "not_humanitarian"), ("2_0", "not_humanitarian", "affected_individuals"),
                      ("3_0", "rescue_volunteering_or_donation_effort", ""), ("4_0", "affected_individuals", "x"),
                      ("5_0", "other_relevant_information", "x"), ("6_0", "", "x")],
            "test": [("7_0", "not_humanitarian", "x"), ("8_0", "infrastructure_and_utility_damage", "x")]}
    paths = _crisismmd_images(tmp_path / "CrisisMMD_v2.0", [r[0] for rs in rows.values() for r in rs])
    split_dir = tmp_path / "crisismmd_datasplit_all"
    split_dir.mkdir()
    head = "event_name\ttweet_id\timage_id\ttweet_text\timage\tlabel\tlabel_text\tlabel_image\tlabel_text_image\n"
    for split, rs in rows.items():
        lines = [f"hurricane_irma\t{i[:-2]}\t{i}\tsome \"quoted\" text\t{paths[i]}\t{t}\t{t}\t{img}\tPositive\n"
                 for i, img, t in rs]
        (split_dir / f"task_humanitarian_text_img_{split}.tsv").write_text(head + "".join(lines))
    data = load_task(tasks.get("humanitarian"), tmp_path, progress=False)
    labels = {s.uid: data.classes[s.label] for s in data.splits["train"]}
    assert labels == {"crisismmd/train/1_0": "infrastructure and utility damage",  # the image label, not the text's
                      "crisismmd/train/2_0": "not humanitarian",
                      "crisismmd/train/3_0": "rescue, volunteering, or donation effort",
                      "crisismmd/train/4_0": "affected, injured, or dead people"}
    assert data.excluded["train"] == {"other_relevant_information": 1, "no image label": 1}


def test_humanitarian_hub_copy_layout(tmp_path):
    """QCRI/CrisisMMD on the hub: split json + per-event annotations (``image_human``); its ``label`` is ignored."""
    root = tmp_path / "hub"
    paths = _crisismmd_images(root, ["11_0", "12_0", "12_1", "13_0"])
    (root / "humanitarian").mkdir()
    train = [{"image_id": "11_0", "image_path": paths["11_0"], "label": 4},
             {"image_id": "12_0", "image_path": paths["12_0"], "label": 4}]
    (root / "humanitarian" / "train.json").write_text("\n".join(json.dumps(r) for r in train))  # JSON lines
    (root / "humanitarian" / "test.json").write_text(json.dumps([{"image_id": "13_0", "image_path": paths["13_0"]}]))
    (root / "files_individual_events").mkdir()
    cols = ["tweet_id", "image_id", "text_info", "image_info", "text_human", "image_human", "tweet_text", "image_path"]
    ann = [["11", "11_0", "informative", "informative", "not_humanitarian", "vehicle_damage", "t", paths["11_0"]],
           ["12", "12_0", "informative", "informative", "vehicle_damage", "not_humanitarian", "t", paths["12_0"]],
           ["13", "13_0", "informative", "informative", "x", "affected_individuals", "t", paths["13_0"]]]
    (root / "files_individual_events" / "hurricane_irma_final_data.tsv").write_text(
        "\t".join(cols) + "\n" + "".join("\t".join(r) + "\n" for r in ann))
    raw = CrisisMMDSource("QCRI/CrisisMMD", None).load(root)
    assert [(uid, key) for uid, key, _ in raw["train"].items] == [("crisismmd/train/11_0", "vehicle_damage"),
                                                                   ("crisismmd/train/12_0", "not_humanitarian")]
    assert raw["test"].items[0][2]() == (root / paths["13_0"]).read_bytes()


# -- data hygiene -------------------------------------------------------------------------------------------

def test_grayscale_cmyk_rgba_palette_16bit_decode_to_rgb(tasks, tmp_path):
    for mode, fmt in (("L", "PNG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("LA", "PNG"),
                      ("I;16", "PNG"), ("RGB", "JPEG")):
        img = decode_image(image_bytes(mode=mode, fmt=fmt))
        assert img.mode == "RGB" and img.size == (6, 5), mode
    rgba = Image.new("RGBA", (2, 2), (255, 0, 0, 0))  # fully transparent red -> white background
    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    assert decode_image(buf.getvalue()).getpixel((0, 0)) == (255, 255, 255)
    # ... and such files load as ordinary samples
    root = write_tree(tmp_path, {"train": {"a": 1, "b": 2}, "test": {"a": 1, "b": 1}})
    (root / "train" / "a" / "gray.png").write_bytes(image_bytes(mode="L"))
    (root / "train" / "a" / "cmyk.jpg").write_bytes(image_bytes(mode="CMYK", fmt="JPEG"))
    (root / "test" / "b" / "rgba.png").write_bytes(image_bytes(mode="RGBA"))
    data = load_task(tasks.get("folder"), root, progress=False)
    assert data.skipped == {"train": [], "test": []} and len(data.splits["train"]) == 5


def test_corrupt_images_are_skipped_counted_and_do_not_unbalance_a_limit(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"a": 4, "b": 4}, "test": {"a": 3, "b": 3}})
    for name in ("bad0.png", "bad1.png", "bad2.png"):
        (root / "train" / "a" / name).write_bytes(b"\x89PNG\r\n\x1a\n not an image")
    (root / "test" / "b" / "cut.png").write_bytes(image_bytes()[:20])
    full = load_task(tasks.get("folder"), root, progress=False)
    assert len(full.skipped["train"]) == 3 and full.skipped["test"] == ["test/b/cut.png"]
    limited = load_task(tasks.get("folder"), root, max_per_class=3, progress=False)
    assert limited.counts() == {"train": {"a": 3, "b": 3}, "test": {"a": 3, "b": 3}}
    assert limited.limit == {"max_per_class": 3}
    again = load_task(tasks.get("folder"), root, max_per_class=3, progress=False)
    assert [s.uid for s in again.splits["train"]] == [s.uid for s in limited.splits["train"]]
    assert again.fingerprint == limited.fingerprint != full.fingerprint


def test_class_whose_training_images_are_all_unreadable(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"a": 2}, "test": {"a": 1, "b": 1}})
    (root / "train" / "b").mkdir()
    (root / "train" / "b" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"class\(es\) \['b'\] was unreadable"):
        load_task(tasks.get("folder"), root, progress=False)


def test_duplicates_across_train_and_test_are_reported(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    (root / "test" / "b" / "copy.png").write_bytes((root / "train" / "a" / "img1.png").read_bytes())
    data = load_task(tasks.get("folder"), root, progress=False)
    assert data.duplicates == [("train/a/img1.png", "test/b/copy.png")]


def test_fingerprint_follows_image_content(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"a": 2, "b": 2}, "test": {"a": 1, "b": 1}})
    before = load_task(tasks.get("folder"), root, progress=False).fingerprint
    (root / "test" / "a" / "img0.png").write_bytes(image_bytes())
    assert load_task(tasks.get("folder"), root, progress=False).fingerprint != before


def test_folders_colliding_after_normalisation(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"Bell_pepper leaf": 2, "Apple leaf": 2},
                                 "test": {"bell pepper leaf": 1, "Apple leaf": 1}})
    with pytest.raises(DataError, match=r"\['Bell_pepper leaf', 'bell pepper leaf'\] -> 'bell pepper leaf'"):
        load_task(tasks.get("agri"), root, progress=False)
    with pytest.raises(DataError, match=r"normalise to \['bell pepper leaf'\]"):
        load_task(tasks.get("folder"), root, progress=False)


def test_unseen_test_class(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"AnnualCrop": 2, "Forest": 2}, "test": {"AnnualCrop": 1, "SeaLake": 1}})
    with pytest.raises(DataError, match=r"test class\(es\) \['sea lake'\] have no training images"):
        load_task(tasks.get("eurosat"), root, progress=False)


def test_empty_class_folder(tasks, tmp_path):
    root = write_tree(tmp_path, {"train": {"Forest": 2, "River": 2}, "test": {"Forest": 1, "River": 1}})
    (root / "test" / "Highway").mkdir()
    (root / "test" / "Highway" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"\['Highway'\] in .*test.* hold no images"):
        load_task(tasks.get("eurosat"), root, progress=False)


def test_hf_source_rows_without_the_hub(tmp_path):
    """The hub source's row handling on an in-memory dataset: ClassLabel names and plain string labels."""
    import datasets

    from benchmark.tasks.sources import HFDatasetSource

    pngs = [image_bytes() for _ in range(3)]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=["AnnualCrop", "SeaLake"])})
    ds = datasets.Dataset.from_dict({"image": [{"bytes": b, "path": None} for b in pngs], "label": [1, 0, 1]},
                                    features=features)
    items = HFDatasetSource({})._items(ds, "timm/eurosat-rgb/train")
    assert [(u, k) for u, k, _ in items] == [("timm/eurosat-rgb/train/000000", "SeaLake"),
                                            ("timm/eurosat-rgb/train/000001", "AnnualCrop"),
                                            ("timm/eurosat-rgb/train/000002", "SeaLake")]
    assert items[2][2]() == pngs[2]
    strings = datasets.Dataset.from_dict({"image": [{"bytes": pngs[0], "path": None}],
                                          "label": ["Eczema Photos"]},
                                         features=datasets.Features({"image": datasets.Image(),
                                                                     "label": datasets.Value("string")}))
    assert HFDatasetSource({})._items(strings, "x")[0][1] == "Eczema Photos"
    with pytest.raises(DataError, match=r"no column\(s\) \['label'\]"):
        HFDatasetSource({})._items(strings.rename_column("label", "dx"), "x")


def test_exif_orientation_is_applied_before_preprocessing(tasks, tmp_path):
    """A photo stored landscape with EXIF "rotate 90 clockwise" (orientation 6) decodes upright, as viewers show it."""
    img = Image.new("RGB", (64, 32), (220, 0, 0))
    img.paste((0, 0, 220), (32, 0, 64, 32))  # left half red, right half blue
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, exif=exif)
    upright = decode_image(buf.getvalue())
    # Turned a quarter clockwise: 32 wide, 64 high, the left (red) half now on top.
    assert upright.size == (32, 64)
    top, bottom = upright.getpixel((16, 8)), upright.getpixel((16, 56))
    assert top[0] > 180 and top[2] < 60 and bottom[2] > 180 and bottom[0] < 60


def test_fingerprint_names_the_image_decoding(tasks, tmp_path, monkeypatch):
    """Features cached under the old decoding (no EXIF orientation) are not reused: the fingerprint moved."""
    from benchmark.tasks import base

    root = write_tree(tmp_path, {"train": {"a": 1, "b": 1}, "test": {"a": 1, "b": 1}})
    now = load_task(tasks.get("folder"), root, progress=False).fingerprint
    monkeypatch.setattr(base, "DECODE_VERSION", 1)
    assert load_task(tasks.get("folder"), root, progress=False).fingerprint != now
