#!/bin/bash
# The pretrained CamVid study's n = 20 subset at the paper's resolution (configs/study/camvid-pretrained-gpu.yaml:
# 360x480 frames, 3 seeds, supervised and full CCT, paired by seed), as ONE device-tool command (issue #15).
# Prepare first, on the development machine: bash scripts/device/prepare.sh. Then the device call is
#   command: bash scripts/device/pretrained_gpu_n20.sh      carry: [".whl", ".gpu"]      timeout_s: 600
# It trains seed 0's pair first, then seeds 1-2, and stops by itself (Ctrl-C: each run saves a checkpoint) at
# STUDY_SECONDS (default 450; then 45 s for the runs to stop); it always sends back the report
# ($OUT/report/), the log and every finished run's figures ($OUT/runs.tgz).
# ITERATIONS=N overrides the preset's 1600 steps (the report records the override).
set -uo pipefail
cd "$(dirname "$0")/../.."
: "${OUT:=/tmp/out}"; mkdir -p "$OUT"
# WHEELS: another folder of wheels (a dry run elsewhere, for its own Python version)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${WHEELS:-.whl}"/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD/packages/cct-perturb/src:$PWD/packages/cct-losses/src:$PWD/packages/cct-weak/src:$PWD/packages/cct-train/src"
export PYTHONUNBUFFERED=1
{ nvidia-smi -L; python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"; } 2>&1 | tee "$OUT/study.log"
python3 scripts/device/camvid_transport.py unpack .gpu/camvid.tar /tmp/camvid 2>&1 | tee -a "$OUT/study.log"

extra=()
[ -n "${ITERATIONS:-}" ] && extra+=(--set "base.train.iterations=$ITERATIONS")
deadline=$(( $(date +%s) + ${STUDY_SECONDS:-450} ))
study() {  # the resumable study; a later call skips the runs an earlier one finished
  local left=$(( deadline - $(date +%s) ))
  [ "$left" -gt 30 ] || { echo "no time left for: $*" | tee -a "$OUT/study.log"; return 124; }
  timeout --signal=INT --kill-after=45 "$left" \
    python3 -m cct_train.cli study camvid --budget pretrained-gpu --data-root /tmp/camvid --runs /tmp/runs \
    --output "$OUT/report" --n 20 --threads 2 "${extra[@]}" "$@" 2>&1 | tee -a "$OUT/study.log"
  return "${PIPESTATUS[0]}"
}
start=$(date +%s)
# Seed 0's pair first, alone: whatever the GPU's speed turns out to be, one paired result comes back.
study --seeds 0 --jobs 2; status=$?
echo "seed 0 done (exit $status) after $(( $(date +%s) - start )) s" | tee -a "$OUT/study.log"
# Then all three seeds (seed 0 skipped as done), four runs at a time: the report covers every finished run.
[ "$status" -eq 0 ] && { study --seeds 0,1,2 --jobs "${JOBS:-4}"; status=$?; }
echo "study exit $status after $(( $(date +%s) - start )) s" | tee -a "$OUT/study.log"
# per-run figures (finished runs) and training logs, whatever the study's state
(cd /tmp/runs 2>/dev/null && find . -name 'study-result.json' -o -name '*.csv' | tar czf "$OUT/runs.tgz" -T -) || true
exit "$status"
