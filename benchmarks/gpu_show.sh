#!/usr/bin/env bash
# One device call on an H200 that runs the training experiments the domain issues ask to show,
# side by side on the one GPU (they are small models; none of them fills the GPU alone):
#   genomics: hg38-mamba-1.4m vs hg38-transformerpp-1.4m, same steps x batch at L = 2^14, then
#             test bits/base; one hg38-mamba-7m run at L = 2^20, batch 1 (activation checkpointing)
#   species:  Mamba vs HyenaDNA (1.4M presets) at L = 2^10, 2^12, 2^14, 2^16, same tokens per step
#   audio:    the Fig. 10 ablation (youtubemix-unet, outer/inner S4/S6) at L = 2^16
#   bytes:    bytes-mamba-small vs bytes-transformerpp-small after equal tokens
#   sc09:     digit classifier, 256 clips from the shipped SC09 model, Table-4 row + real-data rows
#   tests:    pytest -m gpu (kernels at real shapes)
# Throughputs measured here are measured while sharing the GPU; clean ones come from
# `seqsuite bench`. Everything returns packed in $OUT/show.tgz; benchmarks/show_report.py (run at
# the end, also runnable locally on the unpacked folder) writes show.md and the PNGs.
# Needs carry [".whl", ".devdata"]. Usage: SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_show.sh
# SCALE=cpu runs the same pipeline at toy sizes on a CPU, to check it before spending GPU time.
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
if [ "${SCALE:-gpu}" = cpu ]; then
  export PYTHONPATH=$PWD SEQSUITE_CACHE=${SEQSUITE_CACHE:-/tmp/show-cache}; S="python3 -m seqsuite"
  source benchmarks/pack.sh
  OUT=${OUT:-/tmp/show-out}; DEV=cpu; SC09=${SC09:-$HOME/.cache/seqsuite/demo/audio-sc09-small}
  GSIZE=small; BSIZE=small; LM_STEPS=2; LM_L=1024; LM_B=2; L20=4096; SP_STEPS=2; SP_TOK=4096; SP_LENS="10 11"
  AB_STEPS=2; AB_L=4096; AB_B=1; BY_STEPS=2; BY_L=256; BY_B=2; CLS_STEPS=2; GEN_N=2; GEN_SEC=0.05
  TMO=600; PRESET_A=tiny; PRESET_T=genomics-tiny; SP_M=genomics-tiny; SP_H=hg38-hyenadna-1.4m
  AB_PRESET=audio-tiny; BY_M=bytes-tiny; BY_T=bytes-transformerpp-small; L20_PRESET=tiny; VC=chr4; TC=chr5
else
  source benchmarks/device_setup.sh; DEV=cuda; SC09=/tmp/sc09wav
  GSIZE=large; BSIZE=large; LM_STEPS=${LM_STEPS:-400}; LM_L=16384; LM_B=8; L20=1048576; SP_STEPS=${SP_STEPS:-400}
  SP_TOK=65536; SP_LENS="10 12 14 16"; AB_STEPS=${AB_STEPS:-250}; AB_L=65536; AB_B=2
  BY_STEPS=${BY_STEPS:-400}; BY_L=8192; BY_B=8; CLS_STEPS=1500; GEN_N=256; GEN_SEC=1.0; TMO=${TMO:-300}
  PRESET_A=hg38-mamba-1.4m; PRESET_T=hg38-transformerpp-1.4m; SP_M=hg38-mamba-1.4m
  SP_H=hg38-hyenadna-1.4m; AB_PRESET=youtubemix-unet; BY_M=bytes-mamba-small
  BY_T=bytes-transformerpp-small; L20_PRESET=hg38-mamba-7m; VC=chr5; TC=chr6
fi
export OMP_NUM_THREADS=2 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
R=$OUT/show; mkdir -p $R/logs $R/genomics $R/species $R/audio $R/bytes $R/sc09
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/logs/gpu.txt 2>/dev/null
G=/tmp/gdemo; $S genomics make-demo $G --size $GSIZE > $R/logs/make-demo-genomics.log 2>&1
$S audio make-demo music /tmp/music --pieces 16 --seconds 64 > $R/logs/make-demo-music.log 2>&1
$S bytes make-demo /tmp/bytes --size $BSIZE > $R/logs/make-demo-bytes.log 2>&1
echo "setup done at $(el)s"
GARGS="--fasta $G/genome.fa --bed $G/intervals.bed"
experiments() {
# --- genomics LM: the matched pair at 2^14, then 7m at 2^20 batch 1 ---
( for m in $PRESET_A $PRESET_T; do
    timeout -s INT $TMO $S genomics pretrain $GARGS --preset $m --seq-len $LM_L --batch-size $LM_B \
      --steps $LM_STEPS --lr 2e-3 --eval-every 100 --out $R/genomics/lm-$m --device $DEV \
      > $R/logs/lm-$m.log 2>&1 &
  done; wait
  for m in $PRESET_A $PRESET_T; do
    $S genomics evaluate $R/genomics/lm-$m --split test --windows 64 --json --device $DEV \
      > $R/genomics/lm-$m/evaluate_test.txt 2>> $R/logs/lm-$m.log
  done
  echo "genomics pair done at $(el)s"
  timeout -s INT 120 $S genomics pretrain --fasta $G/genome.fa --valid-chroms $VC --test-chroms $TC \
    --preset $L20_PRESET --seq-len $L20 --batch-size 1 --steps 12 --lr 1e-3 --eval-every 12 \
    --grad-checkpoint --out $R/genomics/lm-7m-2p20 --device $DEV > $R/logs/lm-7m-2p20.log 2>&1
  echo "7m at 2^20 rc=$? at $(el)s" ) > $R/logs/genomics-job.log 2>&1 &
# --- species: Mamba vs HyenaDNA by context length, same tokens per step ---
for k in $SP_LENS; do
  L=$(( 1 << k )); B=$(( SP_TOK / L ))
  for m in $SP_M $SP_H; do
    tag=$( [ $m = $SP_M ] && echo mamba || echo hyena )
    ( timeout -s INT $TMO $S genomics finetune-species --manifest $G/manifest.tsv --preset $m \
        --seq-len $L --batch-size $B --steps $SP_STEPS --lr 1e-3 --warmup-frac 0.1 --eval-every 100 \
        --test-windows 256 --out $R/species/$tag-L$k --device $DEV ) > $R/logs/species-$tag-L$k.log 2>&1 &
  done
done
# --- audio: Fig. 10 ablation, four runs at once, then the table (runs reused, test scored) ---
( for oi in s4-s4 s4-s6 s6-s4 s6-s6; do
    timeout -s INT $TMO $S audio pretrain --dataset youtubemix --data /tmp/music --preset $AB_PRESET \
      --outer ${oi%-*} --inner ${oi#*-} --seq-len $AB_L --batch-size $AB_B --steps $AB_STEPS --lr 1e-3 \
      --eval-every 50 --no-preview --out $R/audio/ablation/$oi --device $DEV > $R/logs/ablation-$oi.log 2>&1 &
  done; wait
  $S audio ablation --data /tmp/music --preset $AB_PRESET --seq-len $AB_L --batch-size $AB_B \
    --steps $AB_STEPS --lr 1e-3 --out $R/audio/ablation --test-samples 1048576 --device $DEV \
    > $R/logs/ablation.log 2>&1
  echo "ablation rc=$? at $(el)s" ) > $R/logs/audio-job.log 2>&1 &
# --- bytes: Mamba vs Transformer++ after equal tokens ---
( for m in $BY_M $BY_T; do
    timeout -s INT $TMO $S bytes pretrain /tmp/bytes/corpus --preset $m --seq-len $BY_L \
      --batch-size $BY_B --steps $BY_STEPS --lr 2e-3 --eval-every 100 --out $R/bytes/$m --device $DEV \
      > $R/logs/bytes-$m.log 2>&1 &
  done; wait
  for d in $R/bytes/*/; do
    $S bytes evaluate $d --json --device $DEV > $d/evaluate_test.txt 2>> $R/logs/bytes-eval.log
  done
  echo "bytes done at $(el)s" ) > $R/logs/bytes-job.log 2>&1 &
# --- SC09: classifier, samples from the shipped model, Table-4 rows ---
( $S audio train-classifier --data $SC09 --steps $CLS_STEPS --out $R/sc09/classifier --device $DEV \
    > $R/logs/sc09-classifier.log 2>&1
  $S audio generate --num $GEN_N --batch $GEN_N --seconds $GEN_SEC --spectrograms 16 \
    --out /tmp/sc09-samples --device $DEV > $R/logs/sc09-generate.log 2>&1
  $S audio evaluate /tmp/sc09-samples --classifier $R/sc09/classifier --reference $SC09 \
    --model seqsuite/assets/audio/sc09-small --device $DEV > $R/logs/sc09-evaluate.log 2>&1
  cp /tmp/sc09-samples/manifest.json /tmp/sc09-samples/metrics.json /tmp/sc09-samples/grid.png $R/sc09/ 2>/dev/null
  echo "sc09 done at $(el)s" ) > $R/logs/sc09-job.log 2>&1 &
if [ $DEV = cuda ]; then
  timeout 240 python3 -m pytest -q -m gpu -p no:cacheprovider tests > $R/logs/pytest-gpu.log 2>&1
  echo "gpu tests rc=$? at $(el)s"
fi
wait
}
experiments &
EXP=$!
while kill -0 $EXP 2>/dev/null && [ $(el) -lt ${DEADLINE:-545} ]; do sleep 2; done
if kill -0 $EXP 2>/dev/null; then  # out of time: Ctrl-C every run (they save and exit), then stop
  echo "deadline at $(el)s: interrupting what still runs"; pkill -INT -f "python3 -m seqsuite"
  sleep 12; pkill -KILL -f "python3 -m seqsuite"; pkill -f pytest
fi
wait
echo "experiments done at $(el)s"
python3 benchmarks/show_report.py $R > $R/logs/report.log 2>&1; echo "report rc=$?"
pack $R show  # checkpoints stay on the device (only metrics, logs, PNGs and JSON come back)
echo "all done at $(el)s"
