#!/usr/bin/env bash
# One device call on an H200: the benchmark suite alone on the GPU, then the MambaByte
# generation comparison (prompt 1K / 8K / 64K). PART=compile runs instead the training step of
# hg38-mamba-7m (and its Transformer++ pair) with torch.compile at L = 2^10, 2^14, 2^17.
# Results come back packed as $OUT/bench.tgz. Needs carry [".whl"] (plus ".devdata" for the
# shared setup). Usage: SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_bench.sh
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
B=$OUT/bench; mkdir -p $B
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $B/gpu.txt
if [ "${PART:-all}" = all ]; then
  timeout 430 $S bench all --plot --budget ${BUDGET:-0.3} --out $B/all.json > $B/all.log 2>&1
  echo "bench all rc=$? at $(el)s"
  for P in 1024 8192 65536; do
    timeout $(( 585 - $(el) )) $S bench generate --pair bytes-mamba-small:bytes-transformerpp-small \
      --batches 1 --prompt-len $P --gen-len 256 --audio none --budget 0.3 \
      --out $B/bytes-generate-$P.json > $B/bytes-generate-$P.log 2>&1
    echo "bytes generate prompt $P rc=$? at $(el)s"
  done
else
  timeout 560 $S bench train --pairs hg38-mamba-7m:hg38-transformerpp-7m --lengths 1024,16384,131072 \
    --compile --budget 0.5 --out $B/train-compile.json --plot > $B/train-compile.log 2>&1
  echo "bench train --compile rc=$? at $(el)s"
fi
pack $B bench
echo "all done at $(el)s"
