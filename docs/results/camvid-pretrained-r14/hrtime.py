"""Step time of the pretrained-hr budget's runs on this CPU: supervised, CCT with 11 decoders, CCT with 30 (1 thread)."""
import sys, time, torch
from pathlib import Path
from cct_train.config import config_from_dict
from cct_train.study.schema import load_study_config, base_config
from cct_train.study.data import resized_copy, with_resized_data
from cct_train.engine.trainer import Trainer
torch.set_num_threads(1)
study = load_study_config(sys.argv[1], [f"base.data.root=/work/shared/data/camvid"])
base = base_config(study)
root = resized_copy(base, (180, 240), Path("/work/s36/camvid-180x240"))
base = with_resized_data(base, root)
for method in sys.argv[2].split(","):
    d = base.to_dict()
    d["train"]["mode"] = "supervised" if method == "supervised" else "cct"
    d["model"]["perturbations"] = study.decoders("cct") if method != "supervised" else {}
    d["data"]["split"] = {"n_labeled": 20, "seed": 0}
    d["experiment"]["output_dir"] = f"/tmp/hrtime/{method}"
    tr = Trainer(config_from_dict(d, source="hrtime")); tr.quiet = True; tr.model.train()
    def step():
        ((l, u),) = tr._next_batches().values(); tr.train_step(l, u)
    for _ in range(3): step()
    t = time.perf_counter()
    for _ in range(8): step()
    s = (time.perf_counter() - t) / 8
    print(f"{sys.argv[1]} {method}: {s:.3f} s/step -> 1600 steps {1600*s/60:.0f} min", flush=True)
