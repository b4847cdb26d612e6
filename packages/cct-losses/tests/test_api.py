"""The public API promised by DESIGN.md."""

from __future__ import annotations

import inspect

import torch

import cct_losses


def test_version_and_all() -> None:
    assert cct_losses.__version__ == "0.2.0"
    for name in [
        "ab_ce_loss",
        "AnnealedBootstrappedCE",
        "consistency_loss",
        "ConsistencyLoss",
        "sigmoid_rampup",
        "linear_rampup",
        "cosine_rampdown",
        "log_rampup",
        "ConsistencyWeight",
        "weak_label_loss",
        "WeakLabelLoss",
        "softmax_mse_loss",
    ]:
        assert name in cct_losses.__all__
    for name in cct_losses.__all__:
        assert hasattr(cct_losses, name), name


def test_signatures() -> None:
    sig = inspect.signature(cct_losses.ab_ce_loss)
    assert list(sig.parameters)[:5] == ["logits", "target", "threshold", "ignore_index", "min_kept"]
    assert sig.parameters["ignore_index"].default == 255
    assert sig.parameters["min_kept"].default == 1
    sig = inspect.signature(cct_losses.consistency_loss)
    assert list(sig.parameters)[:3] == ["aux_logits", "main_logits", "kind"]
    assert sig.parameters["kind"].default == "mse"
    sig = inspect.signature(cct_losses.weak_label_loss)
    assert sig.parameters["ignore_index"].default == 255


def test_modules_are_nn_modules() -> None:
    assert isinstance(cct_losses.ConsistencyLoss(), torch.nn.Module)
    assert isinstance(cct_losses.WeakLabelLoss(), torch.nn.Module)
    assert isinstance(cct_losses.AnnealedBootstrappedCE(3, 10), torch.nn.Module)


def test_imports_no_sibling_package() -> None:
    import subprocess
    import sys

    code = (
        "import sys, cct_losses; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('cct_perturb', 'cct_weak', 'cct_train')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_readme_example_runs() -> None:
    import re
    from pathlib import Path

    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(readme), "exec"), {})
