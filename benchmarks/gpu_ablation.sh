#!/usr/bin/env bash
# The Fig. 10 ablation (youtubemix-unet, outer/inner S4/S6, L = 2^16) with the four runs one
# after the other, ALONE on the GPU and all to the same step count, then `seqsuite audio
# ablation` (which reuses the finished runs) scores the test files and writes the table and
# learning curves. gpu_show.sh ran them side by side and a time limit cut them at unequal steps.
#   SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_ablation.sh
# RUN_S caps each run (SIGINT: it saves and stops; the report shows the steps reached) and
# SCORE_S the scoring, so the results are packed before the device's 600 s limit.
# Results: $OUT/ablation.tgz. Needs carry [".whl", ".devdata"].
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
R=$OUT/show; A=$R/audio/ablation; mkdir -p $R/logs $A
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/logs/gpu.txt
$S audio make-demo music /tmp/music --pieces 16 --seconds 64 > $R/logs/make-demo-music.log 2>&1
STEPS=${STEPS:-200}; ARGS="--data /tmp/music --preset youtubemix-unet --seq-len 65536 --batch-size 2 --steps $STEPS --lr 1e-3"
for oi in s4-s4 s4-s6 s6-s4 s6-s6; do
  timeout -s INT ${RUN_S:-120} $S audio pretrain --dataset youtubemix $ARGS --outer ${oi%-*} --inner ${oi#*-} --eval-every 25 \
    --no-preview --out $A/$oi --device cuda > $R/logs/ablation-$oi.log 2>&1
  echo "$oi rc=$? at $(el)s"
done
timeout -s INT ${SCORE_S:-100} $S audio ablation $ARGS --out $A --test-samples 1048576 --device cuda > $R/logs/ablation.log 2>&1
echo "ablation rc=$? at $(el)s"
python3 benchmarks/show_report.py $R --alone > $R/logs/report.log 2>&1
pack $R ablation
echo "all done at $(el)s"
