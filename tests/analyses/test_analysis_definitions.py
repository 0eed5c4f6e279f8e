"""The analyses as their sources define them, checked number by number against independent computations.

* Liang et al. 2022's modality gap (normalised, uncentred) on constructed clouds with a closed-form answer;
* MIR (Huang et al. 2024) against a numpy/scipy Fréchet distance (``scipy.linalg.sqrtm``) on constructed
  Gaussians, its text states after the image only (a high-norm start token changes nothing), and the reference
  fast mode refused where its Newton-Schulz loop breaks down;
* every per-layer number that the modality-gap, MIR and logit-lens analyses report, recomputed by hand from a
  small hidden-state store written to disk.
"""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from scipy.linalg import sqrtm

from benchmark.analyses import (
    AnalysisContext,
    AnalysisOptions,
    AnalysisUnsupported,
    logit_lens,
    mir,
    modality_gap,
)
from benchmark.analyses.hidden import HiddenStore, hidden_batch
from benchmark.conformance import MemoryStore
from benchmark.evaluate.prompt import build_question
from benchmark.registry import Plugins

CLASSES = ["nominal", "global defect", "local defect"]
DOMAIN = "textile surface defects"


# --- independent references (numpy / scipy) ----------------------------------------------------------------------

def ref_liang_gap(x: np.ndarray, y: np.ndarray) -> float:
    """Liang et al.: || mean of the unit rows of x - mean of the unit rows of y ||."""
    ux = x / np.linalg.norm(x, axis=1, keepdims=True)
    uy = y / np.linalg.norm(y, axis=1, keepdims=True)
    return float(np.linalg.norm(ux.mean(0) - uy.mean(0)))


def ref_centred_gap(x: np.ndarray, y: np.ndarray) -> float:
    c = np.concatenate([x, y]).mean(0)
    return ref_liang_gap(x - c, y - c)


def lower_median(v: np.ndarray, axis=None):
    """The lower of the two middle values (torch.median's convention, which the MIR reference code uses)."""
    s = np.sort(v, axis=axis)
    n = s.shape[0] if axis == 0 else s.size
    return s[(n - 1) // 2]


def ref_outliers(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1)
    far = np.abs(norms - lower_median(norms)) > 3 * norms.std(ddof=1)
    out = x.copy()
    out[far] = lower_median(x, axis=0)
    return out


def ref_frechet(x: np.ndarray, y: np.ndarray) -> float:
    sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = sqrtm(sx @ sy).real
    return float(np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(sx) + np.trace(sy) - 2 * np.trace(root))


def ref_layer_mir(image: np.ndarray, text: np.ndarray) -> float:
    s = 1.0 / np.linalg.norm(text, axis=1).mean()
    return ref_frechet(ref_outliers(image * s), ref_outliers(text * s))


# --- the modality gap ---------------------------------------------------------------------------------------------

def symmetric_clouds(offset_norm: float, half_gap: float, spread: float, n: int = 40, d: int = 5):
    """Two clouds o + g +- r w_i and o - g +- r w'_i (o, g, w mutually orthogonal): every row of a cloud has the
    same norm, so the mean of the unit rows and the gaps have closed forms."""
    e = np.eye(d)
    o, g = offset_norm * e[0], half_gap * e[1]
    signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
    x = o + g + spread * signs * e[2]
    y = o - g + spread * signs * e[3]
    return torch.tensor(x), torch.tensor(y)


@pytest.mark.parametrize("offset_norm, half_gap, spread", [(50.0, 3.0, 4.0), (50.0, 0.025, 0.5)])
def test_the_gap_is_liangs_uncentred_one_and_the_centred_variant_differs_as_expected(offset_norm, half_gap, spread):
    x, y = symmetric_clouds(offset_norm, half_gap, spread)
    # Closed forms: |o + g +- r w| = sqrt(|o|^2 + |g|^2 + r^2) for every row, the unit rows' mean is
    # (o + g) / that norm, so the gap is 2|g| / sqrt(|o|^2 + |g|^2 + r^2); centred, the offset is gone and it is
    # 2|g| / sqrt(|g|^2 + r^2).
    liang = 2 * half_gap / math.sqrt(offset_norm ** 2 + half_gap ** 2 + spread ** 2)
    centred = 2 * half_gap / math.sqrt(half_gap ** 2 + spread ** 2)
    assert modality_gap.liang_gap(x, y) == pytest.approx(liang, rel=1e-12)
    assert modality_gap.centred_gap(x, y) == pytest.approx(centred, rel=1e-9)
    assert modality_gap.mean_gap(x, y) == pytest.approx(2 * half_gap, rel=1e-12)
    # A shared offset of norm 50: 0.119 against 1.2; clouds 0.1 % of the offset apart: 0.001 against 0.0999.
    assert centred > 10 * liang


def test_the_gap_matches_the_reference_formula_on_random_clouds():
    rng = np.random.default_rng(0)
    offset = rng.standard_normal(16)
    offset *= 50 / np.linalg.norm(offset)
    x = offset + rng.standard_normal((30, 16)) * 3 + 0.5
    y = offset + rng.standard_normal((25, 16)) * 2
    assert modality_gap.liang_gap(torch.tensor(x), torch.tensor(y)) == pytest.approx(ref_liang_gap(x, y), rel=1e-12)
    assert modality_gap.centred_gap(torch.tensor(x), torch.tensor(y)) == pytest.approx(ref_centred_gap(x, y),
                                                                                       rel=1e-12)


# --- MIR: known answers and the reference's fast mode --------------------------------------------------------------

def gaussian_sample(mean: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose sample mean is exactly ``mean`` and sample covariance (ddof 1) exactly ``cov``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mean)))
    q, _ = np.linalg.qr(z - z.mean(0))        # orthonormal columns, each orthogonal to the ones vector
    return q * math.sqrt(n - 1) @ np.linalg.cholesky(cov).T + mean


def test_layer_mir_is_the_frechet_distance_of_the_constructed_gaussians():
    rng = np.random.default_rng(1)
    d = 6
    a, b = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    s_v, s_t = a @ a.T / d + 0.1 * np.eye(d), b @ b.T / d + 0.1 * np.eye(d)   # non-diagonal, non-commuting
    mu_v, mu_t = np.full(d, 0.5), np.full(d, 2.0)
    x, y = gaussian_sample(mu_v, s_v, 60, 2), gaussian_sample(mu_t, s_t, 60, 3)
    scale = 1.0 / np.linalg.norm(y, axis=1).mean()
    for z in (x * scale, y * scale):       # no outlier (3 sigma of the norms): the closed form applies
        assert np.array_equal(ref_outliers(z), z)
    closed = (np.sum((mu_v - mu_t) ** 2) + np.trace(s_v) + np.trace(s_t) - 2 * np.trace(sqrtm(s_v @ s_t).real))
    assert mir.layer_mir(torch.tensor(x), torch.tensor(y)) == pytest.approx(scale ** 2 * closed, rel=1e-9)


def test_layer_mir_matches_the_numpy_scipy_reference_with_outliers():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((120, 10)) * 2 + 1, rng.standard_normal((150, 10)) + 0.3
    x[5] *= 40                                  # massive activations, replaced by the median
    y[[7, 9]] *= 25
    assert mir.layer_mir(torch.tensor(x), torch.tensor(y)) == pytest.approx(ref_layer_mir(x, y), rel=1e-8)


def reference_fast_mode(sx: torch.Tensor, sy: torch.Tensor) -> float:
    """The reference's fast mode as its code runs it: five Newton-Schulz steps from Y = S_V S_T, Z = I, float32."""
    m = (sx @ sy).float()
    y, z = m, torch.eye(len(m))
    for _ in range(5):
        y = 0.5 * (y + torch.inverse(z) @ m)
        z = 0.5 * (z + torch.inverse(y) @ m)
    return float(torch.trace(y))


def test_compat_mode_is_refused_where_the_reference_loop_breaks_down():
    rng = np.random.default_rng(5)
    d = 12
    many = [torch.tensor(rng.standard_normal((200, d)) * s) for s in (1.0, 0.5)]
    few = [torch.tensor(rng.standard_normal((8, d)) * s) for s in (1.0, 0.5)]   # 8 tokens for 12 dimensions
    sx, sy = mir.covariance(many[0]), mir.covariance(many[1])
    assert mir.compat_problem(*many) == (None, None)
    assert reference_fast_mode(sx, sy) == pytest.approx(float(torch.trace(sx @ sy)), rel=1e-4)
    refusal, _ = mir.compat_problem(*few)
    assert "8 image tokens for 12 dimensions" in refusal and "singular" in refusal
    fx, fy = mir.covariance(few[0]), mir.covariance(few[1])
    try:  # the loop either fails outright or returns something else than Tr(S_V S_T)
        broken = reference_fast_mode(fx, fy)
        assert not broken == pytest.approx(float(torch.trace(fx @ fy)), rel=1e-2)
    except RuntimeError:
        pass
    # Enough tokens, but one dimension constant (rank d - 1): singular all the same.
    flat = many[0].clone()
    flat[:, 3] = 0.25
    refusal, _ = mir.compat_problem(flat, many[1])
    assert "image tokens' covariance is singular" in refusal
    # Invertible but ill-conditioned (one direction 1e-5 of the others' scale): a number, with a warning.
    thin = many[1].clone()
    thin[:, 0] *= 1e-5
    refusal, warning = mir.compat_problem(many[0], thin)
    assert refusal is None and "ill-conditioned" in warning


# --- a small hidden-state store, every per-layer number recomputed by hand -------------------------------------------

def write_store(directory, tensors: dict, labels: list[int], k: int, part_rows: int) -> HiddenStore:
    """A hidden-state store on disk in the extractor's layout, its rows split into parts of ``part_rows``."""
    directory.mkdir(parents=True)
    n = len(labels)
    parts = []
    for p, start in enumerate(range(0, n, part_rows)):
        name = f"part-{p:05d}.safetensors"
        save_file({f: t[start: start + part_rows].contiguous() for f, t in tensors.items()}, str(directory / name))
        parts.append(name)
    num_layers, dim = tensors["image_mean"].shape[1:]
    (directory / "index.json").write_text(json.dumps({
        "uids": [f"img{i}" for i in range(n)], "labels": labels, "parts": parts, "num_layers": num_layers,
        "dim": dim, "tokens_per_image": k}))
    return HiddenStore(directory)


@pytest.fixture(scope="module")
def lens_adapter():
    """The LLaVA twin with a final norm whose weights are not all one (a dropped weight changes every rank)."""
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    norm = adapter.llm_final_norm()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.3, 2.5, norm.weight.numel()).roll(7))
    return adapter


@pytest.fixture(scope="module")
def store(tmp_path_factory, lens_adapter):
    """13 images x 3 layers x 9 tokens in 64 dimensions, with structure a wrong number would show: image tokens
    near the class's first answer token (more so at later layers), a per-layer offset shared by both
    modalities (the gap's offset), text tokens with one high-norm outlier per layer."""
    gen = torch.Generator().manual_seed(0)
    n, layers, k, d = 13, 3, 9, 64
    labels = [i % 3 for i in range(n)]
    head = lens_adapter.llm_output_head().weight.detach().float()
    first = [lens_adapter.tokenizer(" " + c, add_special_tokens=False)["input_ids"][0] for c in CLASSES]
    direction = torch.nn.functional.normalize(head[torch.tensor(first)[labels]], dim=-1)   # (n, d)
    img = torch.randn(n, layers, k, d, generator=gen)
    txt = torch.randn(n, layers, k, d, generator=gen) * 0.7 + 0.4
    for layer in range(layers):
        shared = torch.randn(d, generator=gen) * (2 + layer)
        img[:, layer] += shared + (30.0 * layer) * direction[:, None]
        txt[:, layer] += shared
        txt[layer, layer, 0] *= 30
    tensors = {"image_tokens": img.half(), "text_tokens": txt.half(),
               "image_mean": img.mean(2) + 0.05 * torch.randn(n, layers, d, generator=gen),
               "text_mean": txt.mean(2)}
    return write_store(tmp_path_factory.mktemp("store") / "hidden", tensors, labels, k, part_rows=5)


def context(adapter, store, **options) -> AnalysisContext:
    data = SimpleNamespace(classes=CLASSES, spec=SimpleNamespace(domain=DOMAIN))
    return AnalysisContext(adapter=adapter, regime="zero-shot", seed=3, data=data, stores={},
                           hidden=lambda split: store, options=AnalysisOptions(**options), progress=False)


def store_arrays(store, name: str, layer: int) -> np.ndarray:
    """The stored values of one field and layer, read from the part files directly (not through the store)."""
    from safetensors.numpy import load_file

    return np.concatenate([load_file(str(p))[name][:, layer].astype(np.float64) for p in store._parts])


def test_every_per_layer_modality_gap_number_by_hand(store):
    res = modality_gap.run(context(None, store, permutations=30))
    assert res["primary"] == "gap" and res["x"] == [0, 1, 2] and res["n_images"] == 13 and res["hidden_size"] == 64
    for layer in range(3):
        x, y = store_arrays(store, "image_mean", layer), store_arrays(store, "text_mean", layer)
        gap = ref_liang_gap(x, y)
        assert res["curves"]["gap"][layer] == pytest.approx(gap, rel=1e-9)
        assert res["curves"]["gap_centred"][layer] == pytest.approx(ref_centred_gap(x, y), rel=1e-9)
        assert res["curves"]["gap_raw"][layer] == pytest.approx(np.linalg.norm(x.mean(0) - y.mean(0)), rel=1e-9)
        # The permutation baseline regroups the unit vectors with the seeded generator of the analysis.
        units = np.concatenate([x / np.linalg.norm(x, axis=1, keepdims=True),
                                y / np.linalg.norm(y, axis=1, keepdims=True)])
        g = torch.Generator().manual_seed(3 * 1_000 + layer)
        perm = []
        for _ in range(30):
            idx = torch.randperm(26, generator=g).numpy()
            perm.append(np.linalg.norm(units[idx[:13]].mean(0) - units[idx[13:]].mean(0)))
        perm = np.array(perm)
        assert res["curves"]["perm_mean"][layer] == pytest.approx(perm.mean(), rel=1e-9)
        assert res["curves"]["perm_p95"][layer] == pytest.approx(np.quantile(perm, 0.95), rel=1e-9)
        assert res["curves"]["p_value"][layer] == pytest.approx((np.sum(perm >= gap) + 1) / 31)
    assert res["summary"]["gap_last"] == res["curves"]["gap"][2]


def test_every_per_layer_mir_number_by_hand(store):
    res = mir.run(context(None, store))
    assert res["x"] == [1, 2]                   # the embeddings (hidden state 0) are left out, as in the reference
    per_layer = []
    for layer in (1, 2):
        img = store_arrays(store, "image_tokens", layer).reshape(-1, 64)
        txt = store_arrays(store, "text_tokens", layer).reshape(-1, 64)
        per_layer.append(ref_layer_mir(img, txt))
    assert res["curves"]["frechet"] == pytest.approx(per_layer, rel=1e-7)
    assert res["summary"]["mir"] == pytest.approx(math.log10(sum(per_layer)), rel=1e-9)
    assert (res["n_image_tokens"], res["n_text_tokens"], res["hidden_size"]) == (117, 117, 64)


def test_compat_mir_on_the_store_and_its_refusal_with_too_few_tokens(store, tmp_path):
    res = mir.run(context(None, store, mir_compat=True))
    for i, layer in enumerate((1, 2)):
        s = 1.0 / np.linalg.norm(store_arrays(store, "text_tokens", layer).reshape(-1, 64), axis=1).mean()
        x = ref_outliers(store_arrays(store, "image_tokens", layer).reshape(-1, 64) * s)
        y = ref_outliers(store_arrays(store, "text_tokens", layer).reshape(-1, 64) * s)
        sx, sy = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
        fast = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(sx) + np.trace(sy) - 2 * np.trace(sx @ sy)
        assert res["curves"]["frechet"][i] == pytest.approx(fast, rel=1e-7)
    small = {f: torch.randn(4, 3, 9, 64) if "tokens" in f else torch.randn(4, 3, 64)
             for f in ("image_tokens", "text_tokens", "image_mean", "text_mean")}
    few = write_store(tmp_path / "few", small, [0, 1, 2, 0], 9, part_rows=4)     # 36 tokens for 64 dimensions
    with pytest.raises(AnalysisUnsupported, match=r"36 image tokens for 64 dimensions.*--tokens-per-image \(at least 17"):
        mir.run(context(None, few, mir_compat=True))
    exact = mir.run(context(None, few))          # the exact root is defined for any sample; the sizes are recorded
    assert exact["tokens_per_dimension"] == pytest.approx(36 / 64) and len(exact["curves"]["frechet"]) == 2


def test_every_per_layer_logit_lens_number_by_hand(store, lens_adapter):
    res = logit_lens.run(context(lens_adapter, store, top_tokens=3))
    norm = lens_adapter.llm_final_norm()
    w, eps = norm.weight.detach().double().numpy(), norm.variance_epsilon
    head = lens_adapter.llm_output_head().weight.detach().double().numpy()
    first = [res["class_first_tokens"][c] for c in CLASSES]
    for c, t in zip(CLASSES, first, strict=True):                    # the class name's first token
        assert c.startswith(lens_adapter.tokenizer.decode([t]).strip())
    labels = np.array(store.labels)
    for layer in range(3):
        h = store_arrays(store, "image_tokens", layer)               # (13, 9, 64)
        target = np.repeat(np.array(first)[labels], 9)
        for variant, normed in (("norm", True), ("raw", False)):
            x = h.reshape(-1, 64)
            if normed:
                x = w * x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps)
            logits = x @ head.T
            ranks = (logits > logits[np.arange(len(x)), target][:, None]).sum(1)
            assert res["curves"][f"median_rank_{variant}"][layer] == np.median(ranks)   # 117 ranks: one middle
            assert res["curves"][f"mrr_{variant}"][layer] == pytest.approx(np.mean(1 / (ranks + 1)), rel=1e-9)
            assert res["curves"][f"top1_rate_{variant}"][layer] == pytest.approx(np.mean(ranks == 0))
            top = np.bincount(logits.argmax(1), minlength=len(head))       # the most frequent top-1 token
            reported = res["top_tokens"][variant][layer][0]
            assert top[reported["id"]] == top.max() and reported["share"] == pytest.approx(top.max() / len(x))
    # The structure is visible: the class token climbs with the layer (a constant answer would not).
    ranks = res["curves"]["median_rank_norm"]
    assert ranks[2] < ranks[0] and res["curves"]["top1_rate_norm"][2] > 0


# --- text states: after the image, never the start token -----------------------------------------------------------

def test_a_high_norm_start_token_changes_no_text_state_and_no_mir(real_images):
    adapter = Plugins(autoload=False).adapters.get("llava15-tiny").factory()
    feats = MemoryStore(adapter.vision_features(adapter.preprocess([im for im, _ in real_images])))
    idx = list(range(len(real_images)))
    qs = [build_question(DOMAIN, CLASSES, 0, f"img{i}") for i in idx]

    def per_layer_mir():
        out = hidden_batch(adapter, feats.get(idx), qs, k=8)       # 12 images x 8 tokens > 64 dimensions
        return out, [mir.layer_mir(out["image_tokens"][:, j].reshape(-1, 64), out["text_tokens"][:, j].reshape(-1, 64))
                     for j in range(1, out["text_tokens"].shape[1])]

    before, mir_before = per_layer_mir()
    emb = adapter.model.get_input_embeddings().weight
    bos = adapter.tokenizer.bos_token_id
    with torch.no_grad():
        emb[bos] *= 1000.0                     # a massive activation at position 0, carried by the residual stream
    try:
        after, mir_after = per_layer_mir()
    finally:
        with torch.no_grad():
            emb[bos] /= 1000.0
    # The start token's state is huge at every layer; the sampled text states (after the image) never hold it.
    text_norms = after["text_tokens"].float().norm(dim=-1)
    assert float(text_norms.max()) < 20 * float(before["text_tokens"].float().norm(dim=-1).median())
    assert mir_after == pytest.approx(mir_before, rel=1e-3)   # with the start token sampled: 16 000x smaller


# --- analyze tests on the run's test images: its --drop-duplicates ----------------------------------------------------

@pytest.fixture(scope="module")
def duplicate_runs(tmp_path_factory):
    """The same folder (two test images byte-identical to training images) run zero-shot twice: keeping the
    duplicates, and with --drop-duplicates."""
    from benchmark.cli import main
    from conftest import make_image_folder

    root = tmp_path_factory.mktemp("duplicates")
    folder = make_image_folder(root / "data", {"a": (4, 3), "b": (4, 3)})
    for cls, train, test in (("a", "img000", "img001"), ("b", "img002", "img000")):
        (folder / "test" / cls / f"{test}.jpg").write_bytes((folder / "train" / cls / f"{train}.jpg").read_bytes())
    common = ["--model", "llava15-tiny", "--task", "folder", "--data-dir", str(folder), "--domain", "textile defects",
              "--regimes", "zero-shot", "--probe-max-epochs", "2", "--cache-dir", str(root / "cache"), "--no-progress"]
    assert main(["run", *common, "--results-dir", str(root / "keep")]) == 0
    assert main(["run", *common, "--drop-duplicates", "--results-dir", str(root / "drop")]) == 0
    return root


def analyze(root, results, *extra):
    from benchmark.cli import main

    return main(["analyze", "--model", "llava15-tiny", "--task", "folder", "--regimes", "zero-shot", "--analysis",
                 "modality-gap,layer-probe", "--permutations", "5", "--probe-max-epochs", "2", "--tokens-per-image", "2",
                 "--results-dir", str(results), "--cache-dir", str(root / "cache"), "--no-progress", *extra])


def test_analyze_tests_on_the_runs_test_images_without_the_duplicates(duplicate_runs):
    root = duplicate_runs
    assert analyze(root, root / "drop") == 0
    run = root / "drop" / "llava15-tiny" / "folder" / "zero-shot" / "seed0"
    tested = [json.loads(line)["uid"] for line in (run / "predictions.jsonl").read_text().splitlines()]
    fingerprint = json.loads((run / "metrics.json").read_text())["task_fingerprint"]
    assert len(tested) == 4                                         # 6 test images, 2 of them training images
    analyses = root / "drop" / "llava15-tiny" / "folder" / "analyses"
    for name, count in (("modality-gap", "n_images"), ("layer-probe", "n_test")):
        rec = json.loads((analyses / name / "zero-shot" / "seed0" / "analysis.json").read_text())
        assert rec["identity"]["drop_duplicates"] is True and rec["identity"]["task_fingerprint"] == fingerprint
        assert rec["result"][count] == len(tested)
    # The hidden states the analyses read are those of exactly the run's test images, in its order.
    keys = [p for p in (root / "cache" / "hidden").glob("*/key.json")
            if json.loads(p.read_text())["split"] == "test"
            and json.loads(p.read_text())["task_fingerprint"] == fingerprint]
    assert len(keys) == 1 and HiddenStore(keys[0].parent).uids == tested


def test_an_analysis_with_the_duplicates_is_never_taken_for_one_without(duplicate_runs, tmp_path, capsys):
    import shutil

    root = duplicate_runs
    keep, drop = tmp_path / "keep", tmp_path / "drop"
    shutil.copytree(root / "keep", keep)
    shutil.copytree(root / "drop", drop)
    capsys.readouterr()
    assert analyze(root, keep, "--drop-duplicates") == 2            # the run kept them: asked for, refused
    assert "--drop-duplicates: the run of folder kept the test images" in capsys.readouterr().err
    assert analyze(root, keep) == 0
    rec = keep / "llava15-tiny" / "folder" / "analyses" / "modality-gap" / "zero-shot" / "seed0" / "analysis.json"
    assert json.loads(rec.read_text())["result"]["n_images"] == 6
    assert "2 test image(s) are byte-identical to training images" in capsys.readouterr().err
    # The analyses of the run with the duplicates, put where those of the run without them belong: not reused.
    shutil.rmtree(drop / "llava15-tiny" / "folder" / "analyses", ignore_errors=True)
    shutil.copytree(keep / "llava15-tiny" / "folder" / "analyses", drop / "llava15-tiny" / "folder" / "analyses")
    assert analyze(root, drop) == 2
    assert "differs in: drop_duplicates, task_fingerprint" in capsys.readouterr().err


def test_the_leaderboard_reads_older_gap_records_and_labels_them_centred(duplicate_runs, tmp_path, capsys):
    import shutil

    from benchmark.cli import main
    from benchmark.schema import digest
    from benchmark.storage.integrity import read_sealed_json, seal

    root = duplicate_runs
    results = tmp_path / "drop"
    shutil.copytree(root / "drop", results)
    assert analyze(root, results) == 0
    old = results / "llava15-tiny" / "folder" / "analyses" / "modality-gap" / "zero-shot" / "seed0" / "analysis.json"
    # A record as the first definition wrote it: no version in its identity, the centred gap its only gap.
    rec = read_sealed_json(old)
    rec["identity"].pop("version")
    rec["identity_hash"] = digest(rec["identity"])
    curves = rec["result"]["curves"]
    rec["result"].update(primary="gap_centred", curves={k: v for k, v in curves.items() if k != "gap"},
                         summary={"gap_centred_last": curves["gap_centred"][-1]})
    old.write_text(json.dumps(seal(rec)))
    capsys.readouterr()
    assert main(["leaderboard", "--results", str(results)]) == 0
    md = capsys.readouterr().out
    assert "### modality-gap (older definition: centred gap, not Liang et al.'s" in md
    assert "### layer-probe\n" in md                                  # a current record keeps its plain name
    assert main(["leaderboard", "--results", str(results), "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)["analyses"]["rows"]
    assert {r["analysis"] for r in rows} == {"layer-probe", "modality-gap (older definition: centred gap, not "
                                             "Liang et al.'s; text states include the start token and the prompt "
                                             "before the image)"}
    # analyze never takes the older result for the current definition, and says why.
    assert analyze(root, results) == 2
    assert "holds a result of an older definition of modality-gap (version 1, now 2" in capsys.readouterr().err
