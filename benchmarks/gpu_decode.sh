#!/usr/bin/env bash
# One device call for decoding speed (issue 9, 2026-11-29): the GPU tests of the Triton sampler,
# the fused Mamba-S6 stack step and chunked CUDA-graph decoding, then `bench generate` three
# ways so each change is timed on its own:
#   fused   default: K-step graphs with in-kernel sampling + one fused kernel per layer stack
#   chunks  SEQSUITE_FUSED_STEP=0: K-step graphs, layers stepped one by one
#   base    SEQSUITE_FUSED_STEP=0 --no-chunks: one graph per step, torch sampling (as before)
# Results: $OUT/decode.tgz. Needs carry [".whl", ".devdata"].
#   SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_decode.sh
# GEN_CLI=1 runs `seqsuite audio generate` (shipped model) at batch 1 and 64. ONLY_FUSED=1 skips the chunks and base runs. BIG=1 also times the fused step at batch 1024/4096 (SEQSUITE_FUSED_MAX_BATCH=8192).
# TILES="BI,BK,BKO,warps;..." sweeps the fused kernel's tiles (decode_policy.py --tiles).
# PROFILE=1 profiles chunk-graph replays (benchmarks/profile_decode.py; PROFILE_CASES="preset:batch ...",
# PROFILE_ENVS="VAR=v VAR2=v;VAR=w" repeats them under each ';'-separated environment).
# POLICY=1 also runs benchmarks/decode_policy.py; SKIP_BENCH=1 skips the three bench runs.
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
P=$OUT/decode; mkdir -p $P
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv > $P/gpu.txt 2>&1
timeout ${TESTS_S:-150} python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_kernels_gpu.py \
  -k "${TESTS_K:-sampler or fused or chunked or decode or side_streams}" > $P/pytest-gpu.log 2>&1
rc=$?; echo "gpu tests rc=$rc at $(el)s"; tail -3 $P/pytest-gpu.log
if [ $rc -ne 0 ] && [ -n "${STOP_ON_FAIL:-}" ]; then pack $P decode; exit 1; fi
if [ -n "${POLICY:-}" ]; then  # fused on/off by width bound and batch (sets core/fused_step.py defaults)
  timeout ${POLICY_S:-240} python3 benchmarks/decode_policy.py --out $P/policy.json > $P/policy.log 2>&1
  echo "policy rc=$? at $(el)s"; cat $P/policy.log | grep -v Warn | tail -40
fi
if [ -n "${TILES:-}" ]; then  # sweep the fused kernel's tiles, e.g. TILES="0,0,0,0;32,64,32,8;64,128,64,8"
  timeout ${TILES_S:-200} python3 benchmarks/decode_policy.py --out $P/tiles.json --batches 1,16 \
    --cases "sc09-unet-small:128;sc09-unet-large:128" --tiles "$TILES" > $P/tiles.log 2>&1
  echo "tiles rc=$? at $(el)s"; grep -v Warn $P/tiles.log | tail -30
fi
if [ -n "${PROFILE:-}" ]; then  # kernel time per decoded sample (torch.profiler over chunk-graph replays)
  IFS=';' read -ra ENVS <<< "${PROFILE_ENVS:-}"; [ ${#ENVS[@]} -gt 0 ] || ENVS=("")
  for i in "${!ENVS[@]}"; do
    for pb in ${PROFILE_CASES:-sc09-unet-small:1 sc09-unet-large:1}; do
      f=$P/profile-${pb%%:*}-b${pb##*:}-e$i
      echo "== ${ENVS[$i]:-defaults}" > $f.log
      env ${ENVS[$i]} timeout 120 python3 benchmarks/profile_decode.py --preset ${pb%%:*} --batch ${pb##*:} \
        --out $f.json >> $f.log 2>&1
      echo "profile $pb [${ENVS[$i]:-defaults}] rc=$? at $(el)s"; grep -v -i warn $f.log | grep -v "^  _warn" | tail -${PROFILE_LINES:-32}
    done
  done
fi
AB=${AUDIO_BATCHES:-1,16,64,256,1024,4096}
bench() {  # NAME TIMEOUT ARGS...
  local name=$1 cap=$2; shift 2
  timeout $cap $S bench generate --budget 0.3 --out $P/generate-$name.json "$@" > $P/generate-$name.log 2>&1
  echo "generate $name rc=$? at $(el)s"; grep -E "^\|" $P/generate-$name.log | tail -20
}
[ -n "${SKIP_BENCH:-}" ] || bench fused ${FUSED_S:-200} --batches 1,16 --audio sc09-unet-small,sc09-unet-large --audio-batches $AB
[ -n "${SKIP_BENCH:-}${ONLY_FUSED:-}" ] || SEQSUITE_FUSED_STEP=0 bench chunks ${CHUNKS_S:-150} --batches 1,16 --audio sc09-unet-small,sc09-unet-large --audio-batches $AB
[ -n "${SKIP_BENCH:-}${ONLY_FUSED:-}" ] || SEQSUITE_FUSED_STEP=0 bench base ${BASE_S:-90} --batches 1 --audio sc09-unet-small --audio-batches 1,256 --no-chunks
if [ -n "${BIG:-}" ]; then  # the fused step beyond FUSED_MAX_BATCH
  SEQSUITE_FUSED_MAX_BATCH=8192 bench fused-big ${BIG_S:-90} --batches 1 --pair hg38-mamba-7m:hg38-transformerpp-7m \
    --audio sc09-unet-small,sc09-unet-large --audio-batches 1024,4096
fi
if [ -n "${GEN_CLI:-}" ]; then  # the user's command with the shipped SC09 model, chunk graphs + fused step
  for b in 1 64; do
    timeout 60 $S audio generate --num $b --seconds 1 --batch $b --out $P/cli-b$b --seed 0 > $P/cli-b$b.log 2>&1
    echo "audio generate batch $b rc=$? at $(el)s"
    python3 -c "import json; m=json.load(open('$P/cli-b$b/manifest.json')); print('samples/s', round(m['samples_per_s']), 'RTF', round(m['real_time_factor'], 2))"
    find $P/cli-b$b -name "*.wav" -o -name "sample_*.png" | tail -n +3 | xargs rm -f
  done
fi
pack $P decode
echo "all done at $(el)s"
