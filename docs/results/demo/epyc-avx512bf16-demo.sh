#!/bin/bash
# cct demo as a user runs it (300 iterations), seeds 1-4 one after another (seed 0 ran first, alone), on 2 idle
# cores of an AMD EPYC with AVX512-BF16 (bf16 autocast).
cd /work/main
for s in 1 2 3 4; do
  start=$(date +%s.%N)
  .venv/bin/cct demo --seed $s --output /work/s36/demo-s$s > /work/s36/demo-s$s.log 2>&1
  echo "seed $s rc $? wall $(echo "$(date +%s.%N) - $start" | bc) s" >> /work/s36/demo300-times.txt
done
