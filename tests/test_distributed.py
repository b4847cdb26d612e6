"""Two CPU processes through `accelerate launch` (gloo): both ranks must end with identical weights."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from cct_train.config import config_from_dict, save_config

SCRIPT = """
import sys
from pathlib import Path
from safetensors.torch import save_file
from cct_train.config import load_config
from cct_train.engine.trainer import Trainer

trainer = Trainer(load_config(sys.argv[1]), quiet=True)
result = trainer.fit()
rank = trainer.accelerator.process_index
state = {k: v.detach().contiguous() for k, v in trainer.unwrapped.state_dict().items()}
save_file(state, str(Path(sys.argv[2]) / f"rank{rank}.safetensors"))
print("rank", rank, "of", trainer.accelerator.num_processes, "miou", result.metrics.get("miou"))
"""


@pytest.mark.slow
@pytest.mark.parametrize("domains", ["one", "two-alternate"])
def test_two_process_cpu_training_keeps_ranks_identical(
    domains: str,
    synthetic_root: Path,
    synthetic_root_b: Path,
    tmp_path: Path,
    tiny_config: Callable[..., dict[str, Any]],
    tiny_two_domain_config: Callable[..., dict[str, Any]],
) -> None:
    launcher = shutil.which("accelerate", path=str(Path(sys.executable).parent)) or shutil.which("accelerate")
    if launcher is None:
        pytest.skip("accelerate's launcher is not installed")
    cfg_path = tmp_path / "cfg.yaml"
    if domains == "one":
        raw = tiny_config(synthetic_root, tmp_path / "run", iterations=3, eval_every=3)
    else:
        # Alternating domains leave one head out of each step's graph: DDP must cope (unused parameters).
        raw = tiny_two_domain_config(
            synthetic_root, synthetic_root_b, tmp_path / "run", iterations=3, eval_every=3
        )
    save_config(config_from_dict(raw), cfg_path)
    script = tmp_path / "train_ddp.py"
    script.write_text(SCRIPT)
    # `accelerate launch --cpu` starts a single process in accelerate >= 1.x; the multi-process launcher on a
    # machine without visible GPUs gives MULTI_CPU with the gloo backend, which is what clusters of CPUs use.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [
            launcher,
            "launch",
            "--num_processes",
            "2",
            "--multi_gpu",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--main_process_port",
            str(29533 + (domains != "one")),
            str(script),
            str(cfg_path),
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "of 2" in proc.stdout
    rank0 = load_file(str(tmp_path / "rank0.safetensors"))
    rank1 = load_file(str(tmp_path / "rank1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
