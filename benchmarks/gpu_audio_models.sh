#!/usr/bin/env bash
# Train and export the two shipped audio models (sc09-small, music-small) on one H200, and pack
# runs, logs and models into $OUT/audio-models.tgz (the device returns at most 8 files).
# carry [".whl", ".devdata"] as for gpu_session.sh.
set -u
source benchmarks/device_setup.sh
R=/tmp/res; mkdir -p $R/runs $R/models
( timeout -s INT ${SC09_S:-165} $S audio pretrain --dataset sc09 --data /tmp/sc09wav --preset sc09-unet-demo \
    --steps ${SC09_STEPS:-1000} --lr 2e-3 --out $R/runs/sc09 --device cuda --eval-every 200
  $S audio export $R/runs/sc09 $R/models/sc09-small ) > $R/sc09.log 2>&1 &
( $S audio make-demo music /tmp/music --pieces 8 --seconds 64
  timeout -s INT ${MUSIC_S:-140} $S audio pretrain --dataset youtubemix --data /tmp/music --preset youtubemix-unet-demo \
    --seq-len 16384 --batch-size 16 --steps ${MUSIC_STEPS:-600} --lr 2e-3 --out $R/runs/music --device cuda --eval-every 150
  $S audio export $R/runs/music $R/models/music-small ) > $R/music.log 2>&1 &
wait
rm -rf $R/runs/*/best $R/runs/*/last $R/runs/*/tb
tar -C $R -czf $OUT/audio-models.tgz .
ls -la $OUT; tail -3 $R/sc09.log $R/music.log
