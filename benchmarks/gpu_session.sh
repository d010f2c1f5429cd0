#!/usr/bin/env bash
# One device session on an H200 (the `device` tool's nvidia-h200): GPU tests, the shipped demo
# models and the benchmark suite; results come back packed as $OUT/session.tgz and
# $OUT/assets.tgz (the device returns at most 8 files). Needs carry [".whl", ".devdata"]
# (.whl from ../shared/tools/device-wheels pyfaidx librosa soundfile; .devdata/sc09.tar holds the
# espeak-ng demo digits as FLAC, since the device has no espeak-ng). Usage:
#   SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_session.sh
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
mkdir -p $OUT/runs $OUT/assets/audio $OUT/bench $OUT/logs
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $OUT/logs/gpu.txt
echo "setup done at $(el)s"
# --- shipped models and GPU tests, concurrently ---
( timeout -s INT ${SC09_S:-230} $S audio pretrain --dataset sc09 --data /tmp/sc09wav --preset sc09-unet-demo \
    --steps ${SC09_STEPS:-1200} --lr 2e-3 --out $OUT/runs/sc09 --device cuda --eval-every 200
  $S audio export $OUT/runs/sc09 $OUT/assets/audio/sc09-small ) > $OUT/logs/sc09.log 2>&1 &
( $S audio make-demo music /tmp/music --pieces 16 --seconds 64
  timeout -s INT ${MUSIC_S:-190} $S audio pretrain --dataset youtubemix --data /tmp/music --preset youtubemix-unet-demo \
    --seq-len 16384 --batch-size 16 --steps ${MUSIC_STEPS:-800} --lr 2e-3 --out $OUT/runs/music --device cuda --eval-every 200
  $S audio export $OUT/runs/music $OUT/assets/audio/music-small ) > $OUT/logs/music.log 2>&1 &
( timeout -s INT ${SPECIES_S:-230} $S genomics finetune-species --steps ${SPECIES_STEPS:-800} --seq-len 8192 \
    --batch-size 32 --lr 2e-3 --warmup-frac 0.1 --out $OUT/runs/species --device cuda --eval-every 200 --test-windows 400
  cp -r $OUT/runs/species/export $OUT/assets/genomics-species ) > $OUT/logs/species.log 2>&1 &
timeout 220 python3 -m pytest -q -m gpu -p no:cacheprovider tests > $OUT/logs/pytest-gpu.log 2>&1
echo "gpu tests rc=$? at $(el)s"
wait
echo "models done at $(el)s"
for d in sc09 music; do rm -rf $OUT/runs/$d/best $OUT/runs/$d/last/trainer.safetensors; done
rm -rf $OUT/runs/species/best $OUT/runs/species/last/trainer.safetensors
# --- benchmarks, alone on the GPU ---
B="timeout"
$B 60 $S bench scan --reps 50 --out $OUT/bench/scan.json --plot > $OUT/logs/bench-scan.log 2>&1; echo "scan at $(el)s"
$B 75 $S bench train --budget 0.3 --out $OUT/bench/train.json --plot > $OUT/logs/bench-train.log 2>&1; echo "train at $(el)s"
$B 75 $S bench generate --budget 0.3 --out $OUT/bench/generate.json --plot > $OUT/logs/bench-generate.log 2>&1; echo "generate at $(el)s"
$B 45 $S bench memory --out $OUT/bench/memory.json --plot > $OUT/logs/bench-memory.log 2>&1; echo "memory at $(el)s"
$B 60 $S bench ops --budget 0.3 --out $OUT/bench/ops.json --plot > $OUT/logs/bench-ops.log 2>&1; echo "ops at $(el)s"
# --- the demo on the GPU with the new models ---
if [ $(el) -lt 500 ] && [ -f $OUT/assets/audio/sc09-small/model.safetensors ] && [ -f $OUT/assets/audio/music-small/model.safetensors ] \
   && [ -f $OUT/assets/genomics-species/model.safetensors ]; then
  cp -r $OUT/assets/audio/sc09-small $OUT/assets/audio/music-small seqsuite/assets/audio/
  cp -r $OUT/assets/genomics-species seqsuite/assets/
  timeout $(( 570 - $(el) )) $S demo --quick --out $OUT/demo-gpu > $OUT/logs/demo-gpu.log 2>&1; echo "demo rc=$? at $(el)s"
fi
# the device returns at most 8 files: pack everything but the two model folders into one archive
tar -C $OUT -czf /tmp/session.tgz logs bench runs demo-gpu 2>/dev/null; mv /tmp/session.tgz $OUT/
tar -C $OUT/assets -czf /tmp/assets.tgz . && mv /tmp/assets.tgz $OUT/
rm -rf $OUT/logs $OUT/bench $OUT/runs $OUT/demo-gpu $OUT/assets
echo "all done at $(el)s"
