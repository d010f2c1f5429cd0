#!/usr/bin/env bash
# One device call for the selective-scan kernels (issue 4): the GPU scan tests, the DESIGN §7
# rows with the default kernels, the rows again for other Gluon tunings, and ncu on row 0.
# Results: $OUT/scan.tgz. Needs carry [".whl", ".devdata"].
#   SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_scan.sh
# PARTS (default "tests bench tune ncu"; also "rows": TUNE_ROWS under ROW_CFGS; "btune": the
# rows (ROWS) under each SEQSUITE_SCAN_BWD_GLUON of BWD_CFGS ("ns,programs_per_sm"); "train":
# bench train of the 7M DNA pair at 1K, 16K and 128K tokens); TESTS_K (pytest -k); GLUON_CFGS ("ns,warps_per_sm" list);
# NCU_ROWS (row indices, default 0); NCU_K (kernel regex); ROWS (bench rows, default all).
set -u
PARTS=${PARTS:-tests bench tune ncu}
has() { case " $PARTS " in *" $1 "*) return 0;; esac; return 1; }
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
P=$OUT/scan; mkdir -p $P
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm --format=csv > $P/gpu.txt 2>&1
RARG=""; [ -n "${ROWS:-}" ] && RARG="--rows $ROWS"
if has tests; then
  timeout ${TESTS_S:-240} python3 -m pytest -q -m gpu -p no:cacheprovider -x tests/test_kernels_gpu.py \
    -k "${TESTS_K:-scan or forward_kernels or long_sequence}" > $P/pytest-gpu.log 2>&1
  echo "gpu tests rc=$? at $(el)s: $(tail -1 $P/pytest-gpu.log)"
fi
if has bench; then
  timeout 120 $S bench scan --out $P/bench-scan.json > $P/bench-scan.log 2>&1
  echo "bench scan rc=$? at $(el)s"; cat $P/bench-scan.log | tail -12
fi
if has tune; then
  for c in ${GLUON_CFGS:-4,12 2,6 8,6 4,3}; do
    SEQSUITE_SCAN_GLUON=$c timeout 90 python3 benchmarks/scan.py --reps 50 $RARG \
      --out $P/scan-gluon-${c//,/-}.json > $P/scan-gluon-${c//,/-}.log 2>&1
    echo "gluon $c rc=$? at $(el)s"; grep -E "^ +[0-9]+ " $P/scan-gluon-${c//,/-}.log | cut -c1-80
  done
fi
if has btune; then
  for c in ${BWD_CFGS:-2,1 2,2 2,4}; do
    SEQSUITE_SCAN_BWD_GLUON=$c timeout 120 python3 benchmarks/scan.py --reps 50 $RARG \
      --out $P/scan-bwd-${c//,/-}.json > $P/scan-bwd-${c//,/-}.log 2>&1
    echo "bwd gluon $c rc=$? at $(el)s"; grep -E "^ +[0-9]+ " $P/scan-bwd-${c//,/-}.log | cut -c1-100
  done
fi
if has train; then
  timeout 150 $S bench train --pairs hg38-mamba-7m:hg38-transformerpp-7m --lengths 1024,16384,131072 \
    --budget 0.3 --out $P/train.json > $P/train.log 2>&1
  echo "bench train rc=$? at $(el)s"; tail -8 $P/train.log
fi
if has rows; then
  for c in ${ROW_CFGS:-4,24 4,48 8,24}; do
    SEQSUITE_SCAN_GLUON=$c timeout 90 python3 benchmarks/scan.py --reps 50 --rows ${TUNE_ROWS:-2,3} \
      --out $P/rows-gluon-${c//,/-}.json > $P/rows-gluon-${c//,/-}.log 2>&1
    echo "rows gluon $c rc=$? at $(el)s"; grep -E "^ +[0-9]+ " $P/rows-gluon-${c//,/-}.log | cut -c1-80
  done
fi
if has ncu; then
  for r in ${NCU_ROWS:-0}; do
    timeout 150 ncu --clock-control none -k "regex:${NCU_K:-_fwd_gluon_kernel|_fwd_chunk_summary_gluon}" -c 2 \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section ComputeWorkloadAnalysis \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio,regex:sm__inst_executed_pipe_.*\.avg\.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum" \
      python3 benchmarks/scan_profile.py --row $r --iters 1 > $P/ncu-row$r.log 2>&1
    echo "ncu row $r rc=$? at $(el)s"
    grep -E "stalled_.*ratio +[0-9.]+$|pipe_.*pct" $P/ncu-row$r.log | awk '$NF > 0.05' | sort -k3 -rn | head -30
    grep -E "Duration|Issue Slots Busy|Achieved Occupancy|Registers Per|Theoretical Occupancy|No Eligible|Stall|Warp Cycles Per Issued|Compute \(SM\) Throughput|Memory Throughput" $P/ncu-row$r.log | head -40
  done
fi
pack $P scan
echo "all done at $(el)s"
