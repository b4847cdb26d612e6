"""`cct data prepare`, `cct train --dry-run` on every shipped config, and sliding-window evaluation."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from cct_train.cli import app
from cct_train.data import load_split
from cct_train.data.prepare import prepare_dataset
from cct_train.eval.evaluate import predict_logits, sliding_window_probs, window_starts

CONFIGS = Path(__file__).resolve().parents[3] / "configs"
runner = CliRunner()


def test_prepare_voc_writes_standard_splits(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path / "voc", extra_train=94)  # 100 VOC train images
    report = prepare_dataset("voc", root)
    assert report.usable
    assert not report.fetch
    splits = root / "splits"
    full = load_split(splits / "1464")
    assert len(full.labeled) == 100
    assert set(full.unlabeled) == set(bench.SBD_ONLY)
    classic = load_split(splits / "92")
    assert len(classic.labeled) == 92
    assert set(classic.labeled) <= set(full.labeled)
    assert set(classic.unlabeled) == (set(full.labeled) | set(bench.SBD_ONLY)) - set(classic.labeled)
    assert not (splits / "183").exists()  # more than the copy has: not written, said so
    assert any("183" in note for note in report.notes)
    blender = load_split(splits / "blender-1_16")
    assert len(blender.labeled) == 7  # ceil(104 / 16)
    again = prepare_dataset("voc", root, output=tmp_path / "again")
    assert load_split(tmp_path / "again" / "92").labeled == classic.labeled  # reproducible
    assert (splits / "1464" in again.written) is False
    lines = (splits / "image_labels.txt").read_text().splitlines()
    assert len(lines) == 104
    assert lines[0].split()[0] == "2007_000032"
    assert lines[0].split()[1:] == ["background", "aeroplane"]
    # supplied lists are kept
    (splits / "92" / "labeled.txt").write_text("2007_000032\n")
    prepare_dataset("voc", root, image_labels=False)
    assert (splits / "92" / "labeled.txt").read_text() == "2007_000032\n"


def test_prepare_cli_reports_what_to_fetch(tmp_path: Path, bench: ModuleType) -> None:
    result = runner.invoke(app, ["data", "prepare", "cityscapes", "--root", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "cityscapes-dataset.com" in result.output
    assert "gtFine_trainvaltest.zip" in result.output
    result = runner.invoke(app, ["data", "prepare", "voc", "--root", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert "VOCtrainval_11-May-2012.tar" in result.output
    root = bench.make_voc(tmp_path / "voc", aug=False)
    result = runner.invoke(app, ["data", "prepare", "voc", "--root", str(root), "--no-image-labels"])
    assert result.exit_code == 0, result.output
    assert "SegmentationClassAug" in result.output  # optional part missing: says what to fetch
    cs = bench.make_cityscapes(tmp_path / "cs")
    result = runner.invoke(app, ["data", "prepare", "cityscapes", "--root", str(cs)])
    assert result.exit_code == 0, result.output
    assert len(load_split(cs / "splits" / "1_2").labeled) == 2  # ceil(3 / 2)
    cam = bench.make_camvid(tmp_path / "camvid", n_train=25)
    result = runner.invoke(app, ["data", "prepare", "camvid", "--root", str(cam)])
    assert result.exit_code == 0
    assert len(load_split(cam / "splits" / "n20").labeled) == 20
    sun = bench.make_sunrgbd(tmp_path / "sun")
    result = runner.invoke(app, ["data", "prepare", "sunrgbd", "--root", str(sun)])
    assert result.exit_code == 0
    assert "incomplete" in result.output


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, bench: ModuleType) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bench")
    voc = bench.make_voc(base / "voc", extra_train=14)  # 20 VOC train images: batches of 10 + 10
    for i in range(10):
        bench._jpeg(voc / "VOCdevkit" / "VOC2012" / "JPEGImages" / f"2010_{i:06d}.jpg", 20, 24, i)
        mask = bench.voc_mask(i, 20, 24)
        bench._index_png(voc / "VOCdevkit" / "VOC2012" / "SegmentationClassAug" / f"2010_{i:06d}.png", mask)
    splits = voc / "splits"
    prepare_dataset("voc", voc, image_labels=False)
    names = (splits / "1464" / "labeled.txt").read_text().split()
    for n in (1000,):  # the fixture has fewer than 1,000 images: supply the list, as a user may
        (splits / str(n)).mkdir(parents=True, exist_ok=True)
        (splits / str(n) / "labeled.txt").write_text("\n".join(names[:10]) + "\n")
        unlabeled = sorted(set(names[10:]) | {f"2010_{i:06d}" for i in range(10)} | set(bench.SBD_ONLY))
        (splits / str(n) / "unlabeled.txt").write_text("\n".join(unlabeled) + "\n")
    pseudo = base / "pseudo"
    pseudo.mkdir()
    for name in (splits / "1464" / "unlabeled.txt").read_text().split():
        mask = np.zeros((500, 500), dtype=np.uint8)  # sized like the (padded) samples
        Image.fromarray(mask, mode="L").save(pseudo / f"{name}.png")
    camvid = bench.make_camvid(base / "camvid", n_train=110, n_val=2, height=24, width=32)
    cityscapes = bench.make_cityscapes(base / "cityscapes")
    sunrgbd = bench.make_sunrgbd(base / "sunrgbd", n_train=4)
    return {
        "voc": voc,
        "camvid": camvid,
        "pseudo": pseudo,
        "cityscapes": cityscapes,
        "sunrgbd": sunrgbd,
    }


def _domain_args(path: Path, roots: dict[str, Path]) -> list[str]:
    """--set options pointing each domain of a multi-domain config at its fixture; the tiny Cityscapes and
    SUN RGB-D fixtures (3-4 train images) get 2 labeled images and batches of 2 + 1; every domain crops
    48x64 (the dry run trains one step: see LIGHT_MODEL)."""
    args = []
    for domain in yaml.safe_load(path.read_text())["domains"]:
        name = domain["name"]
        args += ["--set", f"domains.{name}.data.root={roots[domain['data']['dataset']]}"]
        if domain["data"]["dataset"] in ("cityscapes", "sunrgbd"):
            args += [
                "--set",
                f"domains.{name}.data.split.n_labeled=2",
                "--set",
                f"domains.{name}.data.batch_size=2",
                "--set",
                f"domains.{name}.data.unlabeled_batch_size=1",
            ]
        args += ["--set", f"domains.{name}.data.crop_size=[48,64]"]
    return args


SHIPPED = sorted(CONFIGS.glob("*.yaml")) + sorted((CONFIGS / "multidomain").glob("*.yaml"))


#: The dry run trains one real step: with ResNet-18, a small PSP and 48x64 crops of the tiny fixtures instead
#: of each config's backbone and crop, it checks every config's data, perturbations and losses in seconds
#: instead of minutes on 2 cores.
LIGHT_MODEL = [
    "--set",
    "model.encoder=timm:resnet18",
    "--set",
    "model.psp_channels=32",
    "--set",
    "model.weights=null",
]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_configs_pass_dry_run(path: Path, roots: dict[str, Path], tmp_path: Path) -> None:
    if "domains" in yaml.safe_load(path.read_text()):
        if path.parent.name == "multidomain":  # CamVid + horses
            roots = {**roots, "horses": _horses(tmp_path / "horses")}
        args = ["train", "--dry-run", "-c", str(path), *_domain_args(path, roots), *LIGHT_MODEL]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "shared by 2 domains" in result.output
        return
    kind = "voc" if path.name.startswith("voc") else "camvid"
    args = ["train", "--dry-run", "-c", str(path), "--set", f"data.root={roots[kind]}", *LIGHT_MODEL]
    args += ["--set", "data.crop_size=[48,64]"]
    if "weak" in path.name:
        args += ["--set", f"data.pseudo_labels={roots['pseudo']}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "forward + backward" in result.output
    assert "no weight was updated" in " ".join(result.output.split())


def test_dry_run_fails_clearly_without_split_lists(tmp_path: Path, bench: ModuleType) -> None:
    root = bench.make_voc(tmp_path)
    result = runner.invoke(
        app, ["train", "--dry-run", "-c", str(CONFIGS / "voc-1464-cct.yaml"), "--set", f"data.root={root}"]
    )
    assert result.exit_code == 2
    assert "splits/1464/labeled.txt" in result.output.replace("\n", "")


def test_window_starts_cover_the_image() -> None:
    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(3, 4, 2) == [0]


class _Local(torch.nn.Module):
    """A per-pixel model: its sliding-window prediction must equal the whole-image one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 5, 1)
        self.calls: list[tuple[int, int]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape[-2], x.shape[-1]))
        return self.conv(x)


def test_sliding_window_matches_whole_image_for_a_local_model() -> None:
    torch.manual_seed(0)
    model = _Local()
    images = torch.randn(2, 3, 20, 40)
    whole = predict_logits(model, images)
    model.calls.clear()
    windowed = predict_logits(model, images, window=(10, 20), stride=(5, 10))
    assert set(model.calls) == {(10, 20)}
    assert len(model.calls) == 3 * 3
    torch.testing.assert_close(windowed, whole)
    both = predict_logits(model, images, scales=(1.0, 0.5), flip=True, window=(10, 20))
    assert both.shape == (2, 5, 20, 40)
    torch.testing.assert_close(both.sum(1), torch.ones(2, 20, 40))
    probs = sliding_window_probs(model, images, (64, 64))  # larger than the image: one window
    torch.testing.assert_close(probs, whole)


def test_eval_config_section_and_cli_window_parsing(tmp_path: Path) -> None:
    from cct_train.config import ConfigError, load_config

    cfg = load_config(None, ["eval.window=[512, 1024]", "eval.scales=[0.5, 1.0, 1.5]", "eval.flip=true"])
    assert cfg.eval.window == (512, 1024)
    assert cfg.eval.flip
    assert cfg.eval.stride is None
    with pytest.raises(ConfigError, match=r"eval\.scales"):
        load_config(None, ["eval.scales=[]"])
    result = runner.invoke(app, ["eval", str(tmp_path / "x.pt"), "--window", "big"])
    assert result.exit_code == 2
    assert "HxW" in result.output
    assert json.dumps(cfg.to_dict()["eval"])


def _horses(root: Path) -> Path:
    """A Weizmann-horses layout: 24 train + 2 val greyscale photographs with JPEG figure/ground masks."""
    (root / "gray").mkdir(parents=True)
    (root / "figure_ground").mkdir(parents=True)
    mask = np.zeros((30, 40), dtype=np.uint8)
    mask[8:22, 10:30] = 255
    for number in [*range(1, 25), 265, 266]:
        photo = np.random.default_rng(number).integers(0, 255, (30, 40), dtype=np.uint8)
        Image.fromarray(photo).save(root / "gray" / f"horse{number:03d}.jpg")
        Image.fromarray(mask).save(root / "figure_ground" / f"horse{number:03d}.jpg")
    return root
