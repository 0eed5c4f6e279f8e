"""`verify` recomputes every number of a real run from its stored predictions; the leaderboard marks a row whose
numbers do not follow from them; bundles carry runs intact and hostile archives are refused whole.

The expected numbers are computed here from the files with scikit-learn directly, not with the product's code.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from sklearn.metrics import accuracy_score, f1_score

from benchmark.cli import main
from benchmark.evaluate.probe import ProbeConfig
from benchmark.protocol import RunConfig, Runner
from benchmark.storage.bundle import MANIFEST
from benchmark.storage.integrity import CorruptFileError, read_finished, seal

FT = "llava15-tiny/textile@max6/ft-proj/seed0"
ZS = "llava15-tiny/textile@max6/zero-shot/seed0"


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    """A real finished tiny run: zero-shot and FT-Proj, as `run` writes them."""
    root = tmp_path_factory.mktemp("verify")
    Runner(RunConfig(model="llava15-tiny", task="textile", max_per_class=6, probe=ProbeConfig(max_epochs=2),
                     progress=False, regimes=("zero-shot", "ft-proj"), results_dir=str(root / "results"),
                     cache_dir=str(root / "cache"))).run()
    return root / "results"


@pytest.fixture
def results(made, tmp_path) -> Path:
    return Path(shutil.copytree(made, tmp_path / "results", ignore=shutil.ignore_patterns(".lock")))


def verify(capsys, *args) -> tuple[int, list[str]]:
    code = main(["verify", *map(str, args)])
    return code, [line for line in capsys.readouterr().out.splitlines() if ": not checked: " not in line]


def edit(path: Path, change) -> None:
    """Change a record and seal it again, as someone who knows the seal would."""
    m = json.loads(path.read_text())
    change(m)
    path.write_text(json.dumps(seal(m)))


def task_scores(folder: Path) -> tuple[float, float]:
    """(macro-F1 over the classes present, accuracy) of predictions.jsonl, by scikit-learn."""
    rows = [json.loads(line) for line in (folder / "predictions.jsonl").read_text().splitlines()]
    truth, pred = [r["label"] for r in rows], [r["prediction"] for r in rows]
    return (f1_score(truth, pred, labels=sorted(set(truth)), average="macro", zero_division=0),
            accuracy_score(truth, pred))


def test_an_untouched_real_run_verifies_clean(made, capsys):
    code, lines = verify(capsys, made)
    assert code == 0 and lines == []
    f1, accuracy = task_scores(made / FT)
    m = json.loads((made / FT / "metrics.json").read_text())
    assert m["metrics"]["macro_f1"] == pytest.approx(f1, abs=1e-12)   # what "consistent" was checked against
    assert m["metrics"]["accuracy"] == pytest.approx(accuracy, abs=1e-12)


def test_an_edited_number_with_a_recomputed_seal_fails_verify_and_is_marked_on_the_leaderboard(results, capsys):
    edit(results / FT / "metrics.json", lambda m: m["metrics"].update(macro_f1=0.987))
    read_finished(results / FT)   # the seal alone lets it through: it was recomputed
    f1, _ = task_scores(results / FT)
    code, lines = verify(capsys, results)
    assert code == 1
    assert lines == [f"{results}/{FT}: metrics.macro_f1: stored 0.987, recomputed {f1:.6g}"]
    assert main(["leaderboard", "--results", str(results)]) == 0
    out = capsys.readouterr()
    assert "0.9870✗" in out.out and "does not follow from its runs' stored predictions" in out.out
    assert f"✗ {FT}: numbers do not follow from its stored predictions: metrics.macro_f1: stored 0.987" in out.err
    assert main(["leaderboard", "--results", str(results), "--format", "csv"]) == 0
    assert f"{FT}: numbers do not follow" in capsys.readouterr().out   # the CSV's unverified column


@pytest.mark.parametrize("field, change", [
    ("metrics.per_class.", lambda m: next(iter(m["metrics"]["per_class"].values())).update(recall=0.5)),
    ("metrics.confusion_matrix", lambda m: m["metrics"]["confusion_matrix"][0].__setitem__(0, 99)),
    ("metrics.ci95", lambda m: m["metrics"].update(ci95=[0.0, 1.0])),
    ("probe.post_projection.macro_f1", lambda m: m["probe"]["post_projection"].update(macro_f1=0.9)),
    ("probe.post_projection.per_seed[0].accuracy",
     lambda m: m["probe"]["post_projection"]["per_seed"][0].update(accuracy=0.01)),
    ("probe.post_projection.ci95", lambda m: m["probe"]["post_projection"].update(ci95=[0.2, 0.3])),
    ("paired.gain.delta", lambda m: m["paired"]["gain"].update(delta=0.5)),
    ("paired.richness.p_value", lambda m: m["paired"]["richness"].update(p_value=0.001)),
])
def test_each_recorded_number_is_recomputed(results, capsys, field, change):
    edit(results / FT / "metrics.json", change)
    code, lines = verify(capsys, results / FT)
    assert code == 1 and any(line.startswith(f"{results}/{FT}: {field}") for line in lines), lines


def test_a_deleted_seal_on_a_schema_3_record_is_refused_not_read_as_an_older_one(results, capsys):
    path = results / ZS / "metrics.json"
    m = json.loads(path.read_text())
    assert m["schema_version"] == 3
    m.pop("_sha256")
    m["metrics"]["macro_f1"] = 0.987
    path.write_text(json.dumps(m))
    with pytest.raises(CorruptFileError, match="without its seal"):
        read_finished(results / ZS)
    code, lines = verify(capsys, results / ZS)
    assert code == 1 and lines[0].startswith(f"{results}/{ZS}: _sha256: stored absent, recomputed schema 3 "
                                             "without its seal")
    main(["leaderboard", "--results", str(results)])
    assert f"{ZS}/metrics.json`: corrupt: schema 3 without its seal" in capsys.readouterr().out


def test_predictions_that_fail_their_checksum_or_were_removed_fail(results, capsys):
    pred = results / FT / "predictions.jsonl"
    pred.write_text(pred.read_text().replace('"prediction": "', '"prediction": "x', 1))
    code, lines = verify(capsys, results / FT)
    assert code == 1 and lines[0].startswith(f"{results}/{FT}: artifacts.predictions.jsonl: stored sha256 ")
    pred.unlink()
    edit(results / FT / "metrics.json", lambda m: m["artifacts"].pop("predictions.jsonl"))
    code, lines = verify(capsys, results / FT)
    assert code == 1 and f"{results}/{FT}: artifacts.predictions.jsonl: stored not recorded" in lines[0]
    main(["leaderboard", "--results", str(results)])
    assert "artifacts.predictions.jsonl: stored not recorded" in capsys.readouterr().err


def test_export_then_verify_and_leaderboard_read_the_bundle_as_the_folder(made, tmp_path, capsys):
    bundle = tmp_path / "runs.tar.gz"
    assert main(["export", "--results", str(made), "-o", str(bundle)]) == 0
    capsys.readouterr()
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
    assert names[0] == MANIFEST and f"{FT}/predictions.jsonl" in names and not any(".lock" in n for n in names)
    code, lines = verify(capsys, bundle)
    assert code == 0 and lines == []
    for fmt in ("markdown", "csv", "json"):
        main(["leaderboard", "--results", str(made), "--format", fmt])
        folder = capsys.readouterr().out
        main(["leaderboard", "--results", str(bundle), "--format", fmt])
        assert capsys.readouterr().out == folder
    again = tmp_path / "again.tar.gz"
    main(["export", "--results", str(made), str(made / FT), "-o", str(again)])
    with tarfile.open(again) as tar:
        assert {n.split("/seed0/")[0] for n in tar.getnames()[1:]} == {FT.removesuffix("/seed0")}


def _hostile(path: Path, members: list[tuple[tarfile.TarInfo, bytes]], listed: dict) -> None:
    manifest = json.dumps(seal({"format": "projbench-bundle", "format_version": 1, "files": listed})).encode()
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def _file(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


@pytest.mark.parametrize("member, why", [
    (_file("../escaped.txt", b"x"), "unsafe path"),
    (_file("/tmp/absolute.txt", b"x"), "unsafe path"),
    (_link("m/t/zero-shot/seed0/metrics.json", "/etc/passwd"), "symbolic link"),
    (_link("m/t/zero-shot/seed0/metrics.json", "../../../../escaped.txt", tarfile.LNKTYPE), "hard link"),
    (_file("m/t/zero-shot/seed0/extra.json", b"{}"), "not in the manifest"),
])
def test_a_hostile_archive_is_refused_whole(tmp_path, capsys, member, why):
    import hashlib

    path = tmp_path / "evil.tar.gz"
    listed = {member[0].name: {"sha256": hashlib.sha256(member[1]).hexdigest(), "size": len(member[1])}}
    if why == "not in the manifest":
        listed = {}
    _hostile(path, [member], listed)
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path} is refused" in err and why in err and "Nothing of it was used" in err
    assert main(["leaderboard", "--results", str(path)]) == 2 and why in capsys.readouterr().err
    assert not (tmp_path.parent / "escaped.txt").exists() and not Path("/tmp/absolute.txt").exists()


def test_a_member_that_differs_from_its_manifest_is_refused(tmp_path, capsys):
    path = tmp_path / "edited.tar.gz"
    _hostile(path, [_file("m/t/zero-shot/seed0/metrics.json", b"{}")],
             {"m/t/zero-shot/seed0/metrics.json": {"sha256": "0" * 64, "size": 2}})
    assert main(["verify", str(path)]) == 2
    assert "does not match the SHA-256 and size its manifest records" in capsys.readouterr().err


def test_schema_1_results_are_listed_as_not_checkable(capsys):
    fixtures = Path(__file__).parents[1] / "fixtures" / "results" / "blip2-tiny"
    assert main(["verify", str(fixtures)]) == 0
    out = capsys.readouterr()
    assert out.out.count("not checked: every number (no predictions.jsonl recorded: schema 1)") == 6
    assert "6 run folder(s)" in out.err


def test_export_refuses_a_symbolic_link_and_writes_nothing(made, tmp_path, capsys):
    root = Path(shutil.copytree(made, tmp_path / "results", ignore=shutil.ignore_patterns(".lock")))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "secret.txt").write_text("not a result")
    (root / "llava15-tiny" / "linked").symlink_to(outside)
    bundle = tmp_path / "runs.tar.gz"
    assert main(["export", "--results", str(root), "-o", str(bundle)]) == 2
    assert "is a symbolic link" in capsys.readouterr().err and not bundle.exists()
