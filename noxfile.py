"""Every routine task of the monorepo: `nox -s tests | lint | types | demo | bench | install_alone`.

All sessions but `install_alone` share ONE environment, `.venv` at the repository root (the same one a
developer activates): installing torch and friends once instead of once per session saves minutes. It is
(re)installed only when constraints.txt, requirements/dev.txt or a package's pyproject.toml changed.
Every pip call goes through constraints.txt, so CI and developers get the same torch build.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
DEV_ENV = ROOT / ".venv"
CONSTRAINTS = ROOT / "constraints.txt"
PACKAGES = ["cct-perturb", "cct-losses", "cct-weak", "cct-train"]
SOURCES = [f"packages/{p}/src" for p in PACKAGES]

nox.options.sessions = ["lint", "types", "tests"]
nox.options.error_on_external_run = False


def _bin(name: str) -> str:
    sub = "Scripts" if os.name == "nt" else "bin"
    return str(DEV_ENV / sub / name)


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in [CONSTRAINTS, ROOT / "requirements" / "dev.txt"] + [
        ROOT / "packages" / p / "pyproject.toml" for p in PACKAGES
    ]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def dev_env(session: nox.Session) -> None:
    """Create or update the shared development environment `.venv` (editable installs of all packages)."""
    stamp = DEV_ENV / ".cct-env-stamp"
    wanted = _fingerprint()
    if stamp.is_file() and stamp.read_text() == wanted and Path(_bin("python")).exists():
        session.log(f"Reusing {DEV_ENV} (up to date with constraints.txt)")
        return
    if not Path(_bin("python")).exists():
        session.run(sys.executable, "-m", "venv", str(DEV_ENV), external=True)
    pip = [
        _bin("python"),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "-q",
        "-c",
        str(CONSTRAINTS),
    ]
    session.run(*pip, "-r", str(ROOT / "requirements" / "dev.txt"), external=True)
    editable = [arg for p in PACKAGES for arg in ("-e", str(ROOT / "packages" / p))]
    session.run(*pip, *editable, external=True)
    stamp.write_text(wanted)


@nox.session(venv_backend="none")
def tests(session: nox.Session) -> None:
    """All package tests plus the cross-package tests (pass pytest arguments after --)."""
    dev_env(session)
    session.run(_bin("python"), "-m", "pytest", *session.posargs, external=True)


@nox.session(venv_backend="none")
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    dev_env(session)
    session.run(_bin("ruff"), "check", ".", external=True)
    session.run(_bin("ruff"), "format", "--check", ".", external=True)


@nox.session(venv_backend="none")
def fmt(session: nox.Session) -> None:
    """Apply ruff's fixes and formatting."""
    dev_env(session)
    session.run(_bin("ruff"), "check", "--fix", ".", external=True)
    session.run(_bin("ruff"), "format", ".", external=True)


@nox.session(venv_backend="none")
def types(session: nox.Session) -> None:
    """mypy over the public packages (strict on definitions)."""
    dev_env(session)
    session.run(_bin("mypy"), *SOURCES, external=True)


@nox.session(venv_backend="none")
def demo(session: nox.Session) -> None:
    """The README's main job: a short real CCT training + evaluation on generated data (no download)."""
    dev_env(session)
    session.run(_bin("cct"), "demo", *session.posargs, external=True)


@nox.session(venv_backend="none")
def bench(session: nox.Session) -> None:
    """Benchmarks: perturbations vs per-sample loops, and CCT vs supervised training steps."""
    dev_env(session)
    for bench in ("bench_perturb.py", "bench_image.py"):
        session.run(
            _bin("python"), str(ROOT / "packages" / "cct-perturb" / "benchmarks" / bench), external=True
        )
    session.run(_bin("cct"), "bench", *session.posargs, external=True)


_RUN_README = """
import re
text = open({readme!r}).read()
for block in re.findall(r"```python\\n(.*?)```", text, flags=re.S):
    if {skip_image!r} and "cct_perturb.image" in block:  # the [image] extra's example needs kornia
        continue
    exec(compile(block, "README.md", "exec"), {{"__name__": "__readme__"}})
"""


@nox.session
def install_alone(session: nox.Session) -> None:
    """Install each small package alone into an empty venv, check what it pulled; run cct-perturb's README there.

    cct-perturb is checked plain first (torch only; its README's image example is skipped), then with its
    [image] extra installed on top (kornia), where every README example must run.
    """
    forbidden = {"timm", "accelerate", "typer", "segmentation-models-pytorch", "kornia"}
    for package, module in [
        ("cct-perturb", "cct_perturb"),
        ("cct-losses", "cct_losses"),
        ("cct-weak", "cct_weak"),
    ]:
        tmp = Path(session.create_tmp()) / package
        shutil.rmtree(tmp, ignore_errors=True)
        session.run(sys.executable, "-m", "venv", str(tmp), external=True)
        py = str(tmp / "bin" / "python")
        session.run(
            py,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            str(CONSTRAINTS),
            str(ROOT / "packages" / package),
            external=True,
        )
        session.run(
            py, "-c", f"import {module}; print({module}.__name__, {module}.__version__)", external=True
        )
        readme = ROOT / "packages" / package / "README.md"
        if package == "cct-perturb":  # its README example must run with cct-perturb and torch alone
            session.run(py, "-c", _RUN_README.format(readme=str(readme), skip_image=True), external=True)
        listed = session.run(py, "-m", "pip", "list", "--format=freeze", silent=True, external=True) or ""
        names = {line.split("==")[0].lower().replace("_", "-") for line in listed.splitlines()}
        pulled = forbidden & names
        if pulled:
            session.error(f"{package} pulled {sorted(pulled)}")
        if package == "cct-perturb":  # then the [image] extra on top: kornia, and every README example
            extra = f"{ROOT / 'packages' / package}[image]"
            session.run(py, "-m", "pip", "install", "-q", "-c", str(CONSTRAINTS), extra, external=True)
            session.run(py, "-c", _RUN_README.format(readme=str(readme), skip_image=False), external=True)
