"""The monorepo's dependency rules: small packages install alone and never import each other."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"cct-perturb": "cct_perturb", "cct-losses": "cct_losses", "cct-weak": "cct_weak"}
HEAVY = {"timm", "accelerate", "typer", "segmentation-models-pytorch", "rich"}
ALL_IMPORTS = {"cct_perturb", "cct_losses", "cct_weak", "cct_train"}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


@pytest.mark.parametrize("package", sorted(SMALL))
def test_small_package_declares_no_heavy_or_sibling_dependency(package: str) -> None:
    meta = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]
    names = {_requirement_name(d) for d in meta["dependencies"]}
    assert "torch" in names
    assert not names & (HEAVY | {p for p in SMALL if p != package} | {"cct-train"})
    assert re.fullmatch(r"\d+\.\d+\.\d+", _version(package))


def _version(package: str) -> str:
    init = (ROOT / "packages" / package / "src" / SMALL.get(package, "cct_train") / "__init__.py").read_text()
    match = re.search(r'__version__ = "([^"]+)"', init)
    assert match, f"{package} has no __version__"
    return match.group(1)


@pytest.mark.parametrize("package", sorted(SMALL))
def test_small_package_imports_no_sibling(package: str) -> None:
    own = SMALL[package]
    for path in (ROOT / "packages" / package / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                assert top not in (ALL_IMPORTS - {own}), f"{path} imports {name}"
                assert top not in {"timm", "accelerate", "typer", "segmentation_models_pytorch"}, (
                    f"{path}: {name}"
                )


def test_every_package_has_changelog_and_readme_with_current_version() -> None:
    for package in [*SMALL, "cct-train"]:
        folder = ROOT / "packages" / package
        assert (folder / "README.md").read_text().strip()
        assert _version(package) in (folder / "CHANGELOG.md").read_text(), (
            f"{package}: CHANGELOG lacks its version"
        )


@pytest.mark.skipif(
    os.environ.get("CCT_OFFLINE") == "1", reason="CCT_OFFLINE=1: no package index to resolve against"
)
@pytest.mark.parametrize("package", sorted(SMALL))
def test_pip_resolves_small_package_alone(package: str, tmp_path: Path) -> None:
    """What `pip install ./packages/<name>` would pull into an empty environment (a dry-run resolution)."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            "-c",
            str(ROOT / "constraints.txt"),
            str(ROOT / "packages" / package),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    pulled = {
        item["metadata"]["name"].lower().replace("_", "-")
        for item in json.loads(report.read_text())["install"]
    }
    assert package in pulled
    assert "torch" in pulled
    assert not pulled & HEAVY, f"{package} would pull {sorted(pulled & HEAVY)}"
    assert "kornia" not in pulled, (
        f"{package} would pull kornia (cct-perturb's is the optional [image] extra)"
    )
    assert not pulled & ({"cct-train"} | set(SMALL) - {package})


_IMPORT_NAMES = {
    "pillow": "PIL",
    "pyyaml": "yaml",
    "segmentation-models-pytorch": "segmentation_models_pytorch",
}


@pytest.mark.parametrize("package", ["cct-losses", "cct-perturb", "cct-weak", "cct-train"])
def test_package_declares_only_what_it_imports(package: str) -> None:
    """Every declared dependency is imported by the package's sources (kornia in cct-perturb, pillow in
    cct-weak and matplotlib in cct-train were declared for nothing or for one optional command)."""
    meta = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]
    imported: set[str] = set()
    for path in (ROOT / "packages" / package / "src").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported.add(node.module.split(".")[0])
    for spec in meta["dependencies"]:
        name = _requirement_name(spec)
        assert _IMPORT_NAMES.get(name, name.replace("-", "_")) in imported, (
            f"{package} declares {name}, never imports it"
        )
    if package == "cct-perturb":  # its one extra: cct_perturb.image imports kornia
        assert "kornia" in imported


def test_matplotlib_is_an_extra_of_cct_train_used_only_by_the_figures() -> None:
    meta = tomllib.loads((ROOT / "packages" / "cct-train" / "pyproject.toml").read_text())["project"]
    assert "matplotlib" not in {_requirement_name(d) for d in meta["dependencies"]}
    assert any(_requirement_name(d) == "matplotlib" for d in meta["optional-dependencies"]["plots"])
    users = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "packages" / "cct-train" / "src").rglob("*.py")
        if "import matplotlib" in path.read_text()
    )
    assert users == ["packages/cct-train/src/cct_train/eval/plots.py"]


def test_readme_package_table_matches_the_metadata() -> None:
    """The README's "depends on" column names exactly each package's required dependencies, and its extras
    exist (it once said cct-perturb depends on kornia, which its metadata did not declare)."""
    rows = re.findall(
        r"^\| \[(cct-[a-z]+)\]\(packages/[^)]+\) \|[^|]*\|[^|]*\| ([^|]+) \|$",
        (ROOT / "README.md").read_text(),
        re.M,
    )
    assert sorted(name for name, _ in rows) == sorted([*SMALL, "cct-train"])
    for package, column in rows:
        meta = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]
        required, _, extras = column.strip().partition("(+ extras:")
        named = {n.strip() for n in required.split(",") if n.strip()}
        assert named == {_requirement_name(d) for d in meta["dependencies"]}, package
        listed = {n.strip(" )") for n in extras.split(",") if n.strip(" )")}
        assert listed == set(meta.get("optional-dependencies", {})), package
