"""`cct data check` / `check_data` / `preflight`: one test per fault, all faults at once, the CLI, real data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from PIL import Image, ImageFile
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.config import Config, config_from_dict
from cct_train.data import CamVid, FolderDataset, UnlabeledFolder
from cct_train.data.base import MissingFilesError, OutsideRootError
from cct_train.data.check import (
    DataCheckError,
    DataReport,
    DataWarning,
    Problem,
    check_data,
    drop_samples,
    preflight,
    print_report,
    samples_to_skip,
    skipping_config,
)

H, W = 6, 8


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _image(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _mask(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(100 + seed).integers(0, 4, (h, w)).astype(np.uint8)


def _folder(root: Path, train: list[str], val: list[str] | None = None) -> Path:
    """A FolderDataset layout with 4 classes: images/, masks/, train.txt, val.txt."""
    val = ["v0"] if val is None else val
    for i, name in enumerate(train + val):
        _png(root / "images" / f"{name}.png", _image(i))
        _png(root / "masks" / f"{name}.png", _mask(i))
    (root / "train.txt").write_text("".join(f"{n}\n" for n in train))
    (root / "val.txt").write_text("".join(f"{n}\n" for n in val))
    return root


def _config(root: Path, **data: Any) -> Config:
    section: dict[str, Any] = {"dataset": "folder", "root": str(root), "num_classes": 4, "val_split": "val"}
    section.update(data)
    mode = section.pop("mode", "cct")
    if "split" not in section and mode == "cct":
        section["split"] = {"n_labeled": 2}
    return config_from_dict({"data": section, "train": {"mode": mode}})


def _check(config: Config, deep: bool = True) -> DataReport:
    return check_data(config, deep=deep, workers=0, progress=False)


def _kinds(report: DataReport) -> list[str]:
    return sorted(p.kind for p in report.problems)


def _of(report: DataReport, kind: str) -> list[Problem]:
    return [p for p in report.problems if p.kind == kind]


NAMES = ["s0", "s1", "s2", "s3"]


# -- clean data ---------------------------------------------------------------------------------------


def test_clean_folder_has_no_problem(tmp_path: Path) -> None:
    config = _config(_folder(tmp_path, NAMES))
    report = _check(config)
    assert report.problems == []
    assert not report.fatal
    assert report.counts == {"train": 4, "labeled": 2, "unlabeled": 2, "unlabeled_root": 0, "val": 1}
    assert report.checked == 5  # 4 train images (2 with masks) + 1 val
    assert "0 problem(s), 0 fatal" in report.summary()
    quick = _check(config, deep=False)
    assert quick.problems == []
    assert quick.checked == 5
    assert not quick.deep


# -- one fault at a time --------------------------------------------------------------------------------


def test_missing_images_and_masks_are_all_reported(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    (root / "images" / "s1.png").unlink()
    (root / "masks" / "s2.png").unlink()
    (root / "train.txt").write_text("s0\ns1.png\ns2\ns3\nimages/s9.png masks/s9.png\n")
    report = _check(_config(root), deep=False)
    missing = _of(report, "missing")
    paths = sorted(Path(p.path).relative_to(root).as_posix() for p in missing)
    assert paths == ["images/s1.png", "images/s9.png", "masks/s2.png", "masks/s9.png"]
    assert all(p.fatal and p.split == "train" for p in missing)
    assert {p.name for p in missing} == {"s1", "s2", "s9"}
    assert report.fatal
    assert report.counts["train"] == 2  # s0 and s3 are still checked
    assert report.bad_names("train") == {"s1", "s2", "s9"}


def test_missing_files_error_lists_every_path(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    for name in NAMES[:3]:
        (root / "masks" / f"{name}.png").unlink()
    with pytest.raises(MissingFilesError) as info:
        FolderDataset(root, split="train", num_classes=4)
    assert isinstance(info.value, FileNotFoundError)
    assert sorted(p.name for p in info.value.paths) == ["s0.png", "s1.png", "s2.png"]
    assert "3 file(s) not found" in str(info.value)
    skipping = FolderDataset(root, split="train", num_classes=4, missing="skip")
    assert skipping.names == ["s3"]
    assert [e.kind for e in skipping.skipped_entries] == ["missing"] * 3


def test_camvid_missing_files_all_listed(tmp_path: Path) -> None:
    lines = []
    for name in ("a", "b", "c"):
        lines.append(f"train/{name}.png trainannot/{name}.png")
        _png(tmp_path / "train" / f"{name}.png", _image(0))
    _png(tmp_path / "trainannot" / "a.png", _mask(0))
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(MissingFilesError, match=r"2 file\(s\)") as info:
        CamVid(tmp_path, "train")
    assert sorted(p.as_posix()[-16:] for p in info.value.paths) == ["trainannot/b.png", "trainannot/c.png"]
    assert CamVid(tmp_path, "train", missing="skip").names == ["a"]


def _secret(tmp_path: Path) -> Path:
    """A decodable image OUTSIDE the data roots the tests build under tmp_path/<name>."""
    return _png(tmp_path / "secret.png", _image(7))


def test_camvid_list_leaving_the_root_is_refused_by_name(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    root = tmp_path / "camvid"
    for name in ("a", "b"):
        _png(root / "train" / f"{name}.png", _image(0))
        _png(root / "trainannot" / f"{name}.png", _mask(0))
    (root / "train" / "link.png").symlink_to(secret)  # inside the folder, pointing outside the root
    _png(root / "trainannot" / "link.png", _mask(0))
    (root / "train.txt").write_text(
        "train/a.png trainannot/a.png\n../secret.png trainannot/b.png\ntrain/link.png trainannot/link.png\n"
    )
    with pytest.raises(OutsideRootError, match="leave the data root") as info:
        CamVid(root, "train")  # the loader refuses, whatever missing= says...
    assert isinstance(info.value, ValueError)
    assert sorted(Path(e.path).name for e in info.value.entries) == ["link.png", "secret.png"]
    assert "../secret.png" in str(info.value)
    assert str(secret) in str(info.value)
    skipping = CamVid(root, "train", missing="skip")  # ...and with "skip" keeps them out, recorded
    assert skipping.names == ["a"]
    assert {e.kind for e in skipping.skipped_entries} == {"outside-root"}
    config = config_from_dict(
        {"data": {"dataset": "camvid", "root": str(root), "val_split": None}, "train": {"mode": "supervised"}}
    )
    report = _check(config)  # the check names them as such, never as "cannot be decoded"
    outside = _of(report, "outside-root")
    assert sorted(Path(p.path).name for p in outside) == ["link.png", "secret.png"]
    assert all(p.fatal and "leaves the data root" in p.message for p in outside)
    assert _kinds(report) == ["outside-root", "outside-root"]
    assert report.checked == 1  # only train/a.png was decoded


def test_folder_list_leaving_the_root_is_refused_by_name(tmp_path: Path) -> None:
    secret = _secret(tmp_path)
    root = _folder(tmp_path / "data", NAMES)
    (root / "masks" / "s0.png").unlink()
    (root / "masks" / "s0.png").symlink_to(secret)  # a mask found by name, linked outside
    (root / "train.txt").write_text(f"s0\ns1\n../../secret.png masks/s2.png\n{secret} masks/s3.png\n")
    with pytest.raises(OutsideRootError, match="3 path"):
        FolderDataset(root, split="train", num_classes=4)
    report = _check(_config(root, split={}, mode="supervised"), deep=False)
    outside = _of(report, "outside-root")
    assert [Path(p.path).name for p in outside] == ["s0.png", "secret.png", "secret.png"]
    assert all(str(root / "train.txt") in p.message for p in outside)  # the list file and line
    assert report.counts["train"] == 1  # s1 only
    assert "unreadable" not in _kinds(report)


def test_unknown_names_in_split_lists(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    (root / "train.txt").write_text("s0\ns1\nghost\ns2\ns3\n")
    (tmp_path / "labeled.txt").write_text("s0\nphantom\n")
    report = _check(_config(root, split={"labeled_list": str(tmp_path / "labeled.txt")}), deep=False)
    unknown = _of(report, "unknown-name")
    assert {p.name for p in unknown} == {"ghost", "phantom"}
    by_name = {p.name: p for p in unknown}
    assert by_name["ghost"].path.endswith("images/ghost")
    assert by_name["phantom"].path == str(tmp_path / "labeled.txt")
    assert "not a sample" in by_name["phantom"].message
    assert report.counts["labeled"] == 1
    assert report.counts["unlabeled"] == 3


def test_truncated_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path, NAMES)
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _png(root / "images" / "s1.png", big)
    _png(root / "masks" / "s1.png", np.zeros((64, 64), np.uint8))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    report = _check(_config(root, mode="supervised"))
    assert _kinds(report) == ["truncated"]
    (problem,) = report.problems
    assert problem.path == str(path)
    assert problem.name == "s1"
    assert problem.fatal
    assert "truncated" in problem.message
    assert _check(_config(root, mode="supervised"), deep=False).problems == []  # quick mode does not decode
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # set by someone else: still detected
    assert _kinds(_check(_config(root, mode="supervised"))) == ["truncated"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True


def test_unreadable_image_and_mask(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    (root / "images" / "s0.png").write_bytes(b"this is not an image at all")
    (root / "masks" / "s3.png").write_bytes(b"\x89PNG garbage")
    (root / "masks" / "v0.png").write_bytes(b"")
    report = _check(_config(root, mode="supervised"))
    assert {(Path(p.path).parent.name, p.name, p.kind) for p in report.problems} == {
        ("images", "s0", "unreadable"),
        ("masks", "s3", "unreadable"),
        ("masks", "v0", "unreadable"),
    }
    assert "0 bytes" in _of(report, "unreadable")[-1].message or any(
        "0 bytes" in p.message for p in report.problems
    )
    quick = _check(_config(root, mode="supervised"), deep=False)
    assert [(p.kind, p.name) for p in quick.problems] == [("unreadable", "v0")]  # the empty file


def test_mask_size_mismatch(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    _png(root / "masks" / "s2.png", np.zeros((H, W - 1), np.uint8))
    report = _check(_config(root, mode="supervised"))
    (problem,) = report.problems
    assert problem.kind == "size-mismatch"
    assert problem.name == "s2"
    assert problem.fatal
    assert "7x6" in problem.message
    assert "8x6" in problem.message
    assert problem.path.endswith("masks/s2.png")


def test_mask_values_out_of_range(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    mask = np.zeros((H, W), np.uint8)
    mask[0, :3] = 7
    mask[1, 0] = 255  # the ignore index is fine
    mask[2, 0] = 9
    _png(root / "masks" / "s1.png", mask)
    report = _check(_config(root, mode="supervised"))
    (problem,) = report.problems
    assert problem.kind == "mask-values"
    assert problem.fatal
    assert problem.name == "s1"
    assert "7 (3 px)" in problem.message
    assert "9 (1 px)" in problem.message
    void = _check(_config(root, mode="supervised", options={"void_values": [7, 9]}))
    assert void.problems == []
    lenient = _check(_config(root, mode="supervised", options={"strict_masks": False}))
    assert [p.fatal for p in lenient.problems] == [False]
    (tmp_path / "labeled.txt").write_text("s0\ns2\n")
    unlabeled = _check(_config(root, split={"labeled_list": str(tmp_path / "labeled.txt")}))
    (warning,) = unlabeled.problems  # s1 is unlabeled here: its mask is checked but not used
    assert not warning.fatal
    assert "its mask is not used" in warning.message


def test_palette_mismatch_rgb_masks(tmp_path: Path) -> None:
    palette = [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    root = _folder(tmp_path, NAMES)
    for i, name in enumerate([*NAMES, "v0"]):
        rgb = np.asarray(palette, np.uint8)[_mask(i)]
        if name == "s2":
            rgb[0, :5] = (10, 20, 30)
            rgb[1, :2] = (255, 255, 255)
        _png(root / "masks" / f"{name}.png", rgb)
    report = _check(_config(root, mode="supervised", options={"palette": palette}))
    (problem,) = report.problems
    assert problem.kind == "palette"
    assert problem.fatal
    assert problem.name == "s2"
    assert "7 pixels" in problem.message
    assert "(10, 20, 30) x 5 px" in problem.message
    assert "(255, 255, 255) x 2 px" in problem.message
    declared = _config(
        root, mode="supervised", options={"palette": palette, "void_colors": [[10, 20, 30], [255, 255, 255]]}
    )
    assert _check(declared).problems == []
    no_palette = _check(_config(root, mode="supervised"))
    assert {p.kind for p in no_palette.problems} == {"palette"}
    assert len(no_palette.problems) == 5


def test_empty_labeled_set(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    (tmp_path / "labeled.txt").write_text("# nobody\n")
    report = _check(_config(root, split={"labeled_list": str(tmp_path / "labeled.txt")}), deep=False)
    (empty,) = _of(report, "empty")
    assert empty.fatal
    assert "no labeled sample" in empty.message
    assert report.counts["labeled"] == 0
    assert report.counts["unlabeled"] == 4


def test_empty_unlabeled_set_fatal_in_cct_mode_only(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    cct = _check(_config(root, split={}), deep=False)  # every training image labeled, CCT mode
    (empty,) = cct.problems
    assert empty.kind == "empty"
    assert empty.fatal
    assert "unlabeled" in empty.message
    assert _check(_config(root, mode="supervised"), deep=False).problems == []
    no_decoders = config_from_dict(
        {
            "data": {"dataset": "folder", "root": str(root), "num_classes": 4},
            "model": {"perturbations": {}},
        }
    )
    assert _check(no_decoders, deep=False).problems == []
    extra = tmp_path / "extra"
    _png(extra / "u0.png", _image(5))
    with_root = _check(_config(root, split={}, unlabeled_root=str(extra)))
    assert with_root.problems == []
    assert with_root.counts["unlabeled_root"] == 1


def test_duplicates(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    (root / "train.txt").write_text("s0\ns1\ns1.png\ns2\ns3\n")
    (root / "val.csv").write_text(
        "image,mask,name\nimages/v0.png,masks/v0.png,a\nimages/v0.png,masks/v0.png,b\n"
    )
    (tmp_path / "lab.txt").write_text("s0\ns1\ns1\n")
    (tmp_path / "unl.txt").write_text("s1\ns2\ns3\n")
    (root / "val.txt").unlink()
    split = {"labeled_list": str(tmp_path / "lab.txt"), "unlabeled_list": str(tmp_path / "unl.txt")}
    report = _check(_config(root, split=split), deep=False)
    dups = _of(report, "duplicate")
    messages = " | ".join(p.message for p in dups)
    assert "duplicate sample name 's1'" in messages  # twice in train.txt: fatal
    assert "labeled name 's1' is listed 2 times" in messages
    assert "both labeled and unlabeled" in messages
    assert "same image file is listed under 2 names" in messages
    assert [p.fatal for p in dups].count(True) == 1
    assert report.bad_names("train") == set()  # the first s1 is a good sample


# -- everything at once, skipping, preflight -----------------------------------------------------------------


def _broken(root: Path) -> Path:
    _folder(root, [f"s{i}" for i in range(8)], val=["v0", "v1"])
    (root / "images" / "s1.png").unlink()
    (root / "images" / "s2.png").write_bytes(b"junk")
    _png(root / "masks" / "s3.png", np.zeros((H + 1, W), np.uint8))
    _png(root / "masks" / "s4.png", np.full((H, W), 50, np.uint8))
    big = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    image = _png(root / "images" / "v1.png", big)
    _png(root / "masks" / "v1.png", np.zeros((64, 64), np.uint8))
    image.write_bytes(image.read_bytes()[:6000])
    with (root / "train.txt").open("a") as handle:
        handle.write("nobody\n")
    return root


def test_every_fault_is_reported_at_once(tmp_path: Path) -> None:
    config = _config(_broken(tmp_path), split={}, mode="supervised")
    report = _check(config)
    found = {(p.kind, p.name, p.split) for p in report.problems}
    assert found == {
        ("missing", "s1", "train"),
        ("unknown-name", "nobody", "train"),
        ("unreadable", "s2", "train"),
        ("size-mismatch", "s3", "train"),
        ("mask-values", "s4", "train"),
        ("truncated", "v1", "val"),
    }
    assert report.n_fatal == 6
    assert report.bad_names("train") == {"s1", "s2", "s3", "s4", "nobody"}
    assert report.bad_names("val") == {"v1"}
    text = report.format()
    assert all(p.path in text for p in report.problems)
    assert "6 problem(s), 6 fatal (train 5, val 1)" in report.summary()


def test_parallel_check_matches_serial(tmp_path: Path) -> None:
    config = _config(_broken(tmp_path), split={}, mode="supervised")
    serial = _check(config)
    parallel = check_data(config, workers=2, progress=True)
    assert sorted(map(repr, parallel.problems)) == sorted(map(repr, serial.problems))


def test_preflight_raises_or_skips(tmp_path: Path) -> None:
    config = _config(_broken(tmp_path), split={}, mode="supervised")
    with pytest.raises(DataCheckError, match="nobody") as info:
        preflight(config, workers=0, progress=False)
    assert info.value.report.n_fatal == 6
    with pytest.warns(DataWarning, match=r"6 problem\(s\), 6 sample\(s\) dropped \(train 5, val 1\)"):
        report = preflight(config, skip_bad_samples=True, workers=0, progress=False)
    skip = samples_to_skip(report)
    assert skip == {"train": {"s1", "s2", "s3", "s4", "nobody"}, "unlabeled_root": set(), "val": {"v1"}}
    train = FolderDataset(tmp_path, split="train", num_classes=4, missing="skip")
    kept = drop_samples(train, skip["train"])
    assert kept.names == ["s0", "s5", "s6", "s7"]
    assert all(kept[i]["mask"].shape == (H, W) for i in range(len(kept)))
    assert drop_samples(kept, ["zzz"]) is kept
    skipping = skipping_config(config)
    assert skipping.data.options["missing"] == "skip"
    assert "missing" not in config.data.options
    clean = _config(_folder(tmp_path / "clean", NAMES))
    assert not preflight(clean, deep=False, progress=False).fatal


def test_preflight_does_not_skip_an_unusable_set(tmp_path: Path) -> None:
    root = _folder(tmp_path, NAMES)
    for name in NAMES:
        (root / "images" / f"{name}.png").write_bytes(b"junk")
    config = _config(root, mode="supervised")
    with pytest.raises(DataCheckError, match="no labeled sample"):
        preflight(config, skip_bad_samples=True, workers=0, progress=False)
    wrong = config_from_dict(
        {"data": {"dataset": "folder", "root": str(tmp_path / "nowhere"), "num_classes": 4}}
    )
    report = _check(wrong)
    assert {p.kind for p in report.problems} >= {"dataset"}
    assert report.fatal


def test_unlabeled_folder_duplicates_skip(tmp_path: Path) -> None:
    _png(tmp_path / "a.png", _image(0))
    _png(tmp_path / "a.jpg", _image(1))
    with pytest.raises(ValueError, match="two images named"):
        UnlabeledFolder(tmp_path)
    folder = UnlabeledFolder(tmp_path, missing="skip")
    assert folder.names == ["a"]
    assert [e.kind for e in folder.skipped_entries] == ["duplicate"]


# -- the command line --------------------------------------------------------------------------------------


def _write_config(path: Path, config: Config) -> Path:
    path.write_text(yaml.safe_dump(config.to_dict()))
    return path


def test_cli_exit_codes_and_json(tmp_path: Path) -> None:
    runner = CliRunner()
    clean = _write_config(tmp_path / "clean.yaml", _config(_folder(tmp_path / "clean", NAMES)))
    result = runner.invoke(app, ["data", "check", "-c", str(clean), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "0 problem(s), 0 fatal" in result.output

    broken = _write_config(
        tmp_path / "bad.yaml", _config(_broken(tmp_path / "bad"), split={}, mode="supervised")
    )
    out = tmp_path / "out" / "report.json"
    result = runner.invoke(app, ["data", "check", "-c", str(broken), "--workers", "0", "--json", str(out)])
    assert result.exit_code == 1, result.output
    assert "6 fatal" in result.output
    assert "size-mismatch" in result.output
    report = json.loads(out.read_text())
    assert report["ok"] is False
    assert report["n_fatal"] == 6
    assert report["deep"] is True
    assert {p["kind"] for p in report["problems"]} >= {"missing", "truncated", "unknown-name"}
    assert report["counts"]["val"] == 2

    result = runner.invoke(app, ["data", "check", "-c", str(broken), "--quick"])
    assert result.exit_code == 1  # the missing file and the unknown name are list-level
    assert "2 problem(s), 2 fatal" in result.output

    fewer = runner.invoke(app, ["data", "check", "-c", str(clean), "--set", "data.num_classes=3"])
    assert fewer.exit_code == 1
    assert "mask-values" in fewer.output
    typo = runner.invoke(app, ["data", "check", "-c", str(clean), "--set", "data.nmu_classes=3"])
    assert typo.exit_code == 2
    assert "nmu_classes" in typo.output


# -- real data -----------------------------------------------------------------------------------------------


@pytest.mark.data
def test_camvid_real_data_has_no_fatal_problem(camvid_root: Path) -> None:
    config = config_from_dict(
        {"data": {"dataset": "camvid", "root": str(camvid_root), "split": {"n_labeled": 50}}}
    )
    start = time.perf_counter()
    quick = check_data(config, deep=False, progress=False)
    assert not quick.fatal, quick.format()
    assert quick.counts == {"train": 367, "labeled": 50, "unlabeled": 317, "unlabeled_root": 0, "val": 101}
    # deep on the val split and the labeled part: a few hundred PNG decodes
    small = config.model_copy(deep=True)
    small.data.split.n_labeled = 20
    small.data.train_split = "val"
    small.data.val_split = None
    deep = check_data(small, deep=True, workers=2, progress=False)
    assert not deep.fatal, deep.format()
    assert deep.checked == 101
    assert time.perf_counter() - start < 30


def test_report_off_a_terminal_is_one_line_per_problem(tmp_path: Path) -> None:
    import io

    from rich.console import Console

    deep = tmp_path / ("a-folder-name-long-enough-to-overflow-eighty-columns-" * 2)
    root = _broken(deep)
    report = _check(_config(root, split={}, mode="supervised"))
    plain = io.StringIO()
    print_report(report, Console(file=plain, width=80))  # a file: not a terminal
    lines = plain.getvalue().splitlines()
    assert len(lines) == len(report.problems) + 1  # one per problem, then the summary
    for problem in report.problems:  # each file name whole, on the line of its problem
        (line,) = [ln for ln in lines if problem.path in ln and problem.message in ln]
        assert line.split()[:3] == ["FATAL" if problem.fatal else "warn", problem.split, f"{problem.kind}:"]
    table = io.StringIO()
    print_report(report, Console(file=table, width=80, force_terminal=True))
    assert "data problems" in table.getvalue()  # the rich table, on a terminal only

    runner = CliRunner()  # `cct data check` in a pipe
    config = _write_config(tmp_path / "bad.yaml", _config(root, split={}, mode="supervised"))
    result = runner.invoke(app, ["data", "check", "-c", str(config), "--workers", "0"])
    assert result.exit_code == 1
    assert all(p.path in result.output for p in report.problems)
