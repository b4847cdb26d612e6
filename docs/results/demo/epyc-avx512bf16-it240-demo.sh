#!/bin/bash
# cct demo at 240 iterations, seeds 0-4 one after another, on 2 idle cores of this AMD EPYC (AVX512-BF16: bf16).
cd /work/main
for s in 0 1 2 3 4; do
  start=$(date +%s.%N)
  .venv/bin/cct demo --seed $s --iterations 240 --output /work/s36/d240-s$s > /work/s36/d240-s$s.log 2>&1
  echo "seed $s rc $? wall $(echo "$(date +%s.%N) - $start" | bc) s" >> /work/s36/d240-times.txt
done
