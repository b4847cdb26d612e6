"""Round 17: CPU seconds per training step of the study's four methods, interleaved in one process.

Reads each method's run config from a study runs folder (``RUNS/n20/<method>/seed0/config.yaml``, written by
``cct study``), builds its trainer with one torch thread and times ``steps`` steps of each method in turn
(after 2 warm-up steps), so that the methods share the machine's load alike. CPU time (``process_time``) is
reported beside wall time: on a machine shared with other work it is the steadier of the two.

    python docs/results/camvid-pretrained-r17/steptime.py RUNS [supervised,cct,fixmatch,crossview] [12]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from cct_train.config import config_from_dict
from cct_train.engine.trainer import Trainer


def main() -> None:
    runs = Path(sys.argv[1])
    methods = (sys.argv[2] if len(sys.argv) > 2 else "supervised,cct,fixmatch,crossview").split(",")
    steps = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    torch.set_num_threads(1)
    scratch = Path(tempfile.mkdtemp(prefix="steptime-"))
    trainers = {}
    for method in methods:
        raw = yaml.safe_load((runs / "n20" / method / "seed0" / "config.yaml").read_text())
        raw["experiment"]["output_dir"] = str(scratch / method)
        raw["data"]["check"] = "off"
        trainer = Trainer(config_from_dict(raw), quiet=True)
        trainer.model.train()
        trainers[method] = trainer
    times: dict[str, list[tuple[float, float]]] = {m: [] for m in methods}
    for i in range(steps + 2):
        for method, trainer in trainers.items():
            batches = trainer._next_batches()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            trainer._step(batches)
            trainer.step += 1
            if i >= 2:
                times[method].append((time.process_time() - cpu0, time.perf_counter() - wall0))
    base = statistics.median(c for c, _ in times[methods[0]])
    for method in methods:
        cpu = statistics.median(c for c, _ in times[method])
        wall = statistics.median(w for _, w in times[method])
        print(f"{method:11s} CPU {cpu:.3f} s/step ({cpu / base:.2f}x {methods[0]}), wall {wall:.3f} s/step")


if __name__ == "__main__":
    main()
