#!/usr/bin/env bash
# Multi-domain CCT on CamVid + Weizmann horses (disjoint label spaces) against single-domain baselines, at
# the CPU budget of configs/multidomain/camvid-horses-cpu.yaml: six runs, then one table (docs/multidomain.md).
#   scripts/camvid_horses.sh [OUT_DIR] [DATA_DIR]      (defaults: runs/camvid-horses, ../shared/data)
set -euo pipefail
out=${1:-runs/camvid-horses}
data=${2:-../shared/data}
cct=${CCT:-cct}
config=configs/multidomain/camvid-horses-cpu.yaml
roots=(--set "domains.camvid.data.root=$data/camvid" --set "domains.horses.data.root=$data/horses")
per_domain=$(python3 -c "import yaml; print(yaml.safe_load(open('$config'))['train']['iterations'] // 2)")
run() {  # name, extra args...
  local name=$1; shift
  if [[ -f $out/$name/metrics.json ]]; then echo "skip $name (done)"; return; fi
  local start=$SECONDS
  "$cct" train -c "$config" "${roots[@]}" --set "experiment.output_dir=$out/$name" "$@"
  echo "$name $((SECONDS - start))" >> "$out/wall_seconds.txt"
}
mkdir -p "$out"
for mode in supervised cct; do
  for domain in camvid horses; do
    run "$domain-$mode" --domain "$domain" --set "train.mode=$mode" --set "train.iterations=$per_domain"
  done
  run "joint-$mode" --set "train.mode=$mode"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def miou(name, domain):
    m = json.loads((out / name / "metrics.json").read_text())
    return 100 * (m["domains"][domain]["miou"] if "domains" in m else m["miou"])
rows = ["| model | CamVid mIoU | horses mIoU | mean |", "|---|---|---|---|"]
for mode in ("supervised", "cct"):
    c, h = miou(f"camvid-{mode}", "camvid"), miou(f"horses-{mode}", "horses")
    rows.append(f"| single-domain {mode} (one model per domain) | {c:.2f} | {h:.2f} | {(c + h) / 2:.2f} |")
    c, h = miou(f"joint-{mode}", "camvid"), miou(f"joint-{mode}", "horses")
    rows.append(f"| joint {mode} (shared encoder) | {c:.2f} | {h:.2f} | {(c + h) / 2:.2f} |")
table = "\n".join(rows)
(out / "results.md").write_text(table + "\n")
print(table)
PY
