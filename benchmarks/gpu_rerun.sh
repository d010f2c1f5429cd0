#!/usr/bin/env bash
# One device call on an H200, each job alone on the GPU (gpu_show.sh ran 14 jobs at once, which
# left the training runs CPU/launch-bound at <0.2M tokens/s each and cut them at unequal steps):
#   1. the two GPU kernel tests that ran out of memory while sharing the GPU in gpu_show.sh;
#   2. MambaByte generation, Mamba vs Transformer++, prompt 1K / 8K / 64K in one prefill pass;
#   3. hg38-mamba-1.4m vs hg38-transformerpp-1.4m at L = 2^14, the same 300 steps x 8 windows;
#   4. bytes-mamba-small vs bytes-transformerpp-small, the same 300 steps x 8 x 8192 bytes.
# Results come back packed in $OUT/rerun.tgz. Needs carry [".whl", ".devdata"].
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
lim() { local l=$(( ${END:-430} - $(el) )); [ $l -lt $1 ] && echo $(( l > 1 ? l : 1 )) || echo $1; }  # min(want, time left)
source benchmarks/device_setup.sh
R=$OUT/rerun; mkdir -p $R/logs $R/genomics $R/bytes $R/bench
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
$S genomics make-demo /tmp/gdemo --size large > $R/logs/make-demo-genomics.log 2>&1 &
$S bytes make-demo /tmp/bytes --size large > $R/logs/make-demo-bytes.log 2>&1 &
timeout 90 python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_kernels_gpu.py -k "shape3" > $R/logs/pytest-gpu-shape3.log 2>&1
echo "gpu tests rc=$? at $(el)s"
wait
for P in 1024 8192 65536; do
  timeout $(lim 45) $S bench generate --pair bytes-mamba-small:bytes-transformerpp-small --batches 1 --prompt-len $P \
    --gen-len 256 --audio none --budget 0.5 --out $R/bench/bytes-generate-$P.json > $R/logs/bytes-generate-$P.log 2>&1
  echo "bytes generate $P rc=$? at $(el)s"
done
for m in hg38-mamba-1.4m hg38-transformerpp-1.4m; do
  timeout -s INT $(lim 80) $S genomics pretrain --fasta /tmp/gdemo/genome.fa --bed /tmp/gdemo/intervals.bed --preset $m \
    --seq-len 16384 --batch-size 8 --steps 300 --lr 2e-3 --eval-every 50 --out $R/genomics/lm-$m --device cuda \
    > $R/logs/lm-$m.log 2>&1
  timeout $(lim 30) $S genomics evaluate $R/genomics/lm-$m --split test --windows 64 --json --device cuda \
    > $R/genomics/lm-$m/evaluate_test.txt 2>> $R/logs/lm-$m.log
  echo "$m done at $(el)s"
done
for m in bytes-mamba-small bytes-transformerpp-small; do
  timeout -s INT $(lim 60) $S bytes pretrain /tmp/bytes/corpus --preset $m --seq-len 8192 --batch-size 8 --steps 300 \
    --lr 2e-3 --eval-every 50 --out $R/bytes/$m --device cuda > $R/logs/bytes-$m.log 2>&1
  timeout $(lim 30) $S bytes evaluate $R/bytes/$m --json --device cuda > $R/bytes/$m/evaluate_test.txt 2>> $R/logs/bytes-$m.log
  echo "$m done at $(el)s"
done
pack $R rerun
echo "all done at $(el)s"
