#!/usr/bin/env bash
# One short device call that times what this repository changed without a GPU at hand
# (2026-11-29): the experimental sequential forward scan (SEQSUITE_SCAN_FWD=seq: GPU tests at
# real shapes, then the DESIGN §7 rows for a few tunings against the tile kernel), and the
# decode step with fewer kernels (audio samples/s and LM decode tokens/s at small batch).
# Results: $OUT/probe.tgz. Needs carry [".whl", ".devdata"].
#   SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_probe.sh
# PARTS picks what runs (default "tests scan generate"); SEQ_CONFIGS the seq-kernel tunings.
set -u
PARTS=${PARTS:-tests scan generate}
has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
P=$OUT/probe; mkdir -p $P
if has tests; then
SEQSUITE_SCAN_FWD=seq timeout 150 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_kernels_gpu.py > $P/pytest-gpu-seq.log 2>&1
echo "seq gpu tests rc=$? at $(el)s"
fi
if has scan; then
timeout 60 python3 benchmarks/scan.py --reps 50 --out $P/scan-tile.json > $P/scan-tile.log 2>&1
echo "scan tile rc=$? at $(el)s"
for c in ${SEQ_CONFIGS:-32,1,8 32,1,16 64,2,8 16,1,8}; do
  SEQSUITE_SCAN_FWD=seq SEQSUITE_SCAN_SEQ=$c timeout 60 python3 benchmarks/scan.py --reps 50 \
    --out $P/scan-seq-${c//,/-}.json > $P/scan-seq-${c//,/-}.log 2>&1
  echo "scan seq $c rc=$? at $(el)s"
done
fi
if has generate; then
timeout 200 $S bench generate --batches 1,16 --audio sc09-unet-small,sc09-unet-large --audio-batches 1,16,256,1024,4096 \
  --budget 0.3 --out $P/generate.json > $P/generate.log 2>&1
echo "generate rc=$? at $(el)s"
fi
pack $P probe
echo "all done at $(el)s"
