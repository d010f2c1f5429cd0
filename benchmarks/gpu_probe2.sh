#!/usr/bin/env bash
# One device call (issue 4, 2026-11-29 session j): per-kernel times of the chunked rows, forward
# and backward tunings of the rows still short of DESIGN §7's targets, and the address probe
# of row 1's forward. Results: $OUT/probe.tgz. Needs carry [".whl"].
#   SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_probe2.sh
set -u
T0=$(date +%s)
source benchmarks/device_setup.sh > /dev/null 2>&1
P=$OUT/probe; mkdir -p $P
timeout 120 python3 benchmarks/probe_kernels.py --rows 2,3 --iters 10 > $P/kernels.log 2>&1
echo "kernels rc=$? at $(el)s"; cat $P/kernels.log
for c in ${FWD_CFGS:-4,6,8,48 4,6,4,12 4,6,4,24 4,6,8,24 4,6,4,48}; do
  SEQSUITE_SCAN_GLUON=$c timeout 60 python3 benchmarks/scan.py --reps 50 --rows 2,3 > $P/fwd-${c//,/-}.log 2>&1
  echo "fwd $c rc=$? at $(el)s"; row $P/fwd-${c//,/-}.log
done
for c in ${FWD2_CFGS:-2,6}; do
  SEQSUITE_SCAN_GLUON=$c timeout 60 python3 benchmarks/scan.py --reps 50 --rows 0,4 > $P/fwd2-${c//,/-}.log 2>&1
  echo "fwd rows 0,4 $c rc=$? at $(el)s"; row $P/fwd2-${c//,/-}.log
done
for c in ${BWD_CFGS:-2,2,6,0,2 2,1,6,0,1 2,3,6,0,1 2,2,12,0,1}; do
  SEQSUITE_SCAN_BWD_GLUON=$c timeout 60 python3 benchmarks/scan.py --reps 50 --rows 2,3 > $P/bwd-${c//,/-}.log 2>&1
  echo "bwd $c rc=$? at $(el)s"; row $P/bwd-${c//,/-}.log
done
for i in 1 2 3; do
  timeout 60 python3 benchmarks/fwd_spread.py --row 0 --fresh --addresses --medians 10 > $P/spread$i.log 2>&1
  echo "spread $i rc=$? at $(el)s"; cat $P/spread$i.log
done
pack $P probe
echo "all done at $(el)s"
