#!/bin/bash
# cct demo as a user runs it, seeds 0-4 one after another, on 2 idle AMD EPYC cores (AVX2 only, float32).
cd /work/main
for s in 0 1 2 3 4; do
  start=$(date +%s.%N)
  .venv/bin/cct demo --seed $s --output /work/s13/demo-s$s > /work/s13/demo-s$s.log 2>&1
  echo "seed $s rc $? wall $(echo "$(date +%s.%N) - $start" | bc) s" >> /work/s13/demo-times.txt
done
