"""Where and from what a study ran: the hardware, the git commit, and its JSON files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from contextlib import suppress
from pathlib import Path
from typing import Any

from cct_train.common.atomic import atomic_write_text
from cct_train.engine.hardware import (
    available_cores,
    cpu_info,
)


def hardware() -> dict[str, Any]:
    """The machine the study ran on, as far as Python can tell."""
    import torch

    cpu = cpu_info()
    info: dict[str, Any] = {
        "cpu": cpu.model,
        "cpu_capability": cpu.capability,
        "cpu_bf16_instructions": list(cpu.bf16_instructions),
        "cpu_native_bf16": cpu.native_bf16,
        "cores": available_cores(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    with suppress(OSError):
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    return info


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str, allow_nan=True))
