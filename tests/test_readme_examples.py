"""The packages' README examples run as written (they may use timm as the user's own code does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _blocks(readme: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", readme.read_text(), flags=re.S)


@pytest.mark.parametrize("package", ["cct-perturb", "cct-losses"])
def test_readme_python_blocks_run(package: str) -> None:
    readme = ROOT / "packages" / package / "README.md"
    blocks = _blocks(readme)
    assert blocks, f"{readme} has no python example"
    for block in blocks:
        exec(compile(block, str(readme), "exec"), {"__name__": "__readme__"})


def test_root_readme_python_blocks_run() -> None:
    """The top README's example (CCT's consistency term in your own training loop) runs as written."""
    readme = ROOT / "README.md"
    blocks = _blocks(readme)
    assert blocks, f"{readme} has no python example"
    for block in blocks:
        namespace: dict[str, object] = {"__name__": "__readme__"}
        exec(compile(block, str(readme), "exec"), namespace)
        assert float(namespace["loss_u"]) >= 0  # type: ignore[arg-type]


def _distribution_closure(name: str) -> set[str]:
    """``name`` and every distribution it requires (markers evaluated here), as installed."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [name]
    while todo:
        current = todo.pop()
        key = current.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(current)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement not installed here
        seen.add(key)
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _top_level_entries(dist_name: str) -> set[str]:
    from importlib import metadata

    entries = set()
    for file in metadata.distribution(dist_name).files or []:
        top = file.parts[0]
        if top != ".." and not top.endswith((".dist-info", ".egg-info")) and top != "__pycache__":
            entries.add(top)
    return entries


def test_cct_perturb_readme_runs_with_only_torch(tmp_path: Path) -> None:
    """The cct-perturb README example, in a Python that sees only torch (+ its requirements) and cct-perturb.

    Cheaper than a fresh venv with torch reinstalled (`nox -s install_alone` does that, and runs the same
    example there): `python -S -E` (no site-packages, no PYTHONPATH) with a folder of symlinks to the
    installed distributions torch requires, and cct-perturb's src. timm, kornia and the sibling packages
    must not be importable there: the feature example runs, the image example (the [image] extra) raises an
    ImportError naming the pip line.
    """
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    import torch

    torch_site = Path(torch.__file__).resolve().parents[1]
    for dist in sorted(_distribution_closure("torch")):
        for entry in _top_level_entries(dist):
            source = torch_site / entry
            if source.exists() and not (site / entry).exists():
                (site / entry).symlink_to(source)
    src = ROOT / "packages" / "cct-perturb" / "src"
    code = f"""
import importlib.util, re, sys
sys.path[:0] = [{str(site)!r}, {str(src)!r}]
for name in ("timm", "kornia", "accelerate", "segmentation_models_pytorch", "cct_losses", "cct_train"):
    assert importlib.util.find_spec(name) is None, name + " is importable"
import cct_perturb, torch
assert cct_perturb.__file__.startswith({str(src)!r}), cct_perturb.__file__
text = open({str(ROOT / "packages" / "cct-perturb" / "README.md")!r}).read()
blocks = re.findall(r"```python\\n(.*?)```", text, flags=re.S)
assert blocks
for block in blocks:
    if "cct_perturb.image" in block:  # the [image] extra's example: without kornia, the pip line
        try:
            exec(compile(block, "README.md", "exec"), {{"__name__": "__readme__"}})
        except ImportError as err:
            assert "pip install 'cct-perturb[image]'" in str(err), str(err)
            print("IMAGE EXAMPLE NEEDS THE EXTRA")
            continue
        raise AssertionError("the image example ran without kornia")
    exec(compile(block, "README.md", "exec"), {{"__name__": "__readme__"}})
print("README OK")
"""
    proc = subprocess.run(
        [sys.executable, "-S", "-E", "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "README OK" in proc.stdout
    assert "unsupervised consistency loss" in proc.stdout
    assert "IMAGE EXAMPLE NEEDS THE EXTRA" in proc.stdout


@pytest.mark.slow
def test_ssl_deeplabv3plus_example_runs() -> None:
    """examples/ssl_deeplabv3plus.py: all seven perturbations in a plain SSL loop of smp's DeepLabV3+."""
    import importlib.util
    import math

    pytest.importorskip("segmentation_models_pytorch")
    spec = importlib.util.spec_from_file_location("ssl_example", ROOT / "examples" / "ssl_deeplabv3plus.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    history = module.main(steps=2, size=32)
    assert len(history) == 2
    from cct_perturb import PERTURBATIONS

    names = list(PERTURBATIONS)  # the paper's seven
    for record in history:
        assert all(math.isfinite(v) for v in record.values())
        assert sorted(k[2:] for k in record if k.startswith("u_")) == sorted(names)


@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16-autocast"])
def test_unimatch_two_input_decoder_example_runs(bf16: bool) -> None:
    """examples/unimatch_two_input_decoder.py: the seven perturbations through UniMatch's shared two-input
    decoder (a closure over c1), VAT after the clean decode whose graph is alive, G-Cutout guided by
    stride-4 logits over a stride-16 c4, optionally under CPU bf16 autocast (torch and cct-perturb only)."""
    import importlib.util
    import math
    import warnings

    from cct_perturb import PERTURBATIONS

    path = ROOT / "examples" / "unimatch_two_input_decoder.py"
    spec = importlib.util.spec_from_file_location("unimatch_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no VAT fallback, no "nothing cut" warning
        history = module.main(steps=2, size=65, bf16=bf16)
    assert len(history) == 2
    for record in history:
        assert all(math.isfinite(v) for v in record.values())
        assert sorted(k[2:] for k in record if k.startswith("u_")) == sorted(PERTURBATIONS)
        assert record["decodes"] == 1 + len(PERTURBATIONS)  # VAT's search counted no batch
