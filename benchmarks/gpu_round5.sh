#!/usr/bin/env bash
# One device call (issue 4, 2026-11-29 session k): the GPU scan tests and `bench scan`, with
# PATCH applied first if set (a kernel change kept as a patch, its path off by default, so
# the default rows measure main), the rows again with the patch's path on (PATCH_ENV), other
# settings (EXTRA), ncu's shared-memory bank conflicts per kernel (NCU_ROWS) and the host
# launch probe of row 0 (LAUNCH=1, the default; BENCH=0 skips `bench scan`), and ncu's
# per-instruction source counters of chosen kernels (SRC="row;kernel regex;launches to skip ...").
# Results: $OUT/round5.tgz. Needs carry [".whl"].
#   SEQSUITE_COMMIT=<commit> PATCH=<file>.patch PATCH_ENV="VAR=value" bash benchmarks/gpu_round5.sh
set -u
T0=$(date +%s)
source benchmarks/device_setup.sh > /dev/null 2>&1
P=$OUT/round5; mkdir -p $P
if [ -n "${PATCH:-}" ]; then patch -p1 < "$PATCH" > $P/patch.log 2>&1; echo "patch rc=$?"; fi
if [ "${TESTS:-1}" = 1 ]; then
  timeout ${TESTS_S:-260} python3 -m pytest -q -m gpu -p no:cacheprovider -x tests/test_kernels_gpu.py \
    -k "${TESTS_K:-scan_matches or forward_kernels or backward_kernels or long_sequence or inference_path}" > $P/pytest-gpu.log 2>&1
  echo "gpu tests rc=$? at $(el)s: $(tail -1 $P/pytest-gpu.log)"
  grep -E "^(FAILED|ERROR)|Error" $P/pytest-gpu.log | head -5
fi
if [ "${BENCH:-1}" = 1 ]; then
  timeout 120 $S bench scan --out $P/bench-scan.json > $P/bench-scan.log 2>&1
  echo "bench scan rc=$? at $(el)s"; tail -14 $P/bench-scan.log
fi
if [ -n "${PATCH_ENV:-}" ]; then
  env $PATCH_ENV timeout 120 python3 benchmarks/scan.py --reps 50 ${PATCH_ROWS:+--rows $PATCH_ROWS} > $P/scan-patch.log 2>&1
  echo "patch env ($PATCH_ENV) rc=$? at $(el)s"; row $P/scan-patch.log
fi
for c in ${EXTRA:-}; do   # EXTRA: "VAR=value;rows" items, each a scan.py run
  v=${c%%;*}; r=${c#*;}
  env $v timeout 90 python3 benchmarks/scan.py --reps 50 --rows $r > $P/extra-${v//[=,]/-}.log 2>&1
  echo "extra $v rows $r rc=$? at $(el)s"; row $P/extra-${v//[=,]/-}.log
done
for r in ${NCU_ROWS:-}; do   # shared-memory bank conflicts and pipe use of every scan kernel of a row
  timeout 120 ncu --clock-control none -k "regex:gluon|combine" -c ${NCU_C:-8} --metrics \
gpu__time_duration.sum,smsp__issue_active.avg.pct_of_peak_sustained_active,\
sm__inst_executed_pipe_xu.avg.pct_of_peak_sustained_active,l1tex__throughput.avg.pct_of_peak_sustained_active,\
smsp__inst_executed_op_shared_ld.sum,smsp__inst_executed_op_shared_st.sum,\
l1tex__data_pipe_lsu_wavefronts_mem_shared_op_ld.sum,l1tex__data_pipe_lsu_wavefronts_mem_shared_op_st.sum,\
l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_ld.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared_op_st.sum \
    python3 benchmarks/scan_profile.py --row $r --iters 1 > $P/ncu-conflicts-row$r.log 2>&1
  echo "ncu row $r rc=$? at $(el)s"; grep -E "^  [_a-z]|\.sum|pct" $P/ncu-conflicts-row$r.log | sed -E 's/ +/ /g' | cut -c1-110
done
for c in ${SRC:-}; do   # SRC: "row;kernel;skip" items: ncu's per-SASS-instruction counters and
  # warp-state samples of one kernel launch (the skip-th match of the kernel name), kept as
  # a report and as CSV (source page) and text (details page)
  r=${c%%;*}; k=${c#*;}; k=${k%%;*}; s=${c##*;}; f=$P/src-row$r-$k-$s
  timeout 240 ncu --clock-control none -k "regex:$k" -s $s -c 1 --section SpeedOfLight \
    --section WarpStateStats --section SourceCounters --section InstructionStats \
    --section SchedulerStats --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis_Tables \
    -o $f python3 benchmarks/scan_profile.py --row $r --iters 1 > $f.log 2>&1
  echo "ncu source row $r $k skip $s rc=$? at $(el)s"
  ncu -i $f.ncu-rep --page details --print-details all > $f-details.txt 2>&1
  ncu -i $f.ncu-rep --page source --print-source sass --csv > $f-sass.csv 2>&1
  grep -E "Stall|stall|Issue|Warp Cycles|Active Warps" $f-details.txt | head -30 | sed -E 's/ +/ /g'
done
[ "${LAUNCH:-1}" = 1 ] && { timeout 90 python3 benchmarks/probe_launch.py --row 0 > $P/launch.log 2>&1; echo "launch rc=$? at $(el)s"; tail -20 $P/launch.log; }
pack $P round5
echo "all done at $(el)s"
