from __future__ import annotations

import subprocess
import sys

import cct_weak


def test_public_api() -> None:
    assert cct_weak.__version__ == "0.1.0"
    for name in ("CAMClassifier", "compute_cams", "cams_to_pseudo_labels", "crf_refine"):
        assert name in cct_weak.__all__
    for name in cct_weak.__all__:
        assert hasattr(cct_weak, name)


def test_import_is_light_and_self_contained() -> None:
    code = (
        "import sys, cct_weak; "
        "bad = [m for m in ('cct_train', 'cct_perturb', 'cct_losses', 'timm', 'accelerate', 'pydensecrf') "
        "if m in sys.modules]; print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
