#!/usr/bin/env bash
# Species classification, Mamba vs HyenaDNA (1.4M presets) by context length, each run ALONE on
# the GPU and run to the same number of steps (gpu_show.sh ran them side by side, which left
# each at < 0.2M tokens/s and far too few tokens to learn; see RESULTS.md 2026-11-29).
# One device call holds ~10 min: split the lengths over calls with LENS, e.g.
#   LENS="10 12" SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_species.sh
#   LENS="14 16" ...
# Defaults: 2^17 tokens per step x 800 steps = 105M tokens per run, lr 2e-3 as for the shipped
# classifier (which needed ~200M tokens at 2^13). MODELS picks the presets; EXTRA="LR:K ..." adds
# HyenaDNA runs at another lr (and length 2^K) under species-lrLR/. Results: $OUT/species.tgz; python benchmarks/show_report.py on the unpacked
# folder writes the table and species_accuracy.png. Needs carry [".whl", ".devdata"].
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
R=$OUT/show; mkdir -p $R/logs $R/species
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv > $R/logs/gpu.txt
$S genomics make-demo /tmp/gdemo --size large > $R/logs/make-demo-genomics.log 2>&1
TOK=${TOK:-131072}; STEPS=${STEPS:-800}
species_run() {  # PRESET K LR RUN_DIR: one run at L = 2^K with TOK tokens per step, capped at RUN_S
  local L=$(( 1 << $2 ))
  timeout -s INT ${RUN_S:-125} $S genomics finetune-species --manifest /tmp/gdemo/manifest.tsv --preset $1 \
    --seq-len $L --batch-size $(( TOK / L )) --steps $STEPS --lr $3 --warmup-frac 0.1 --eval-every 100 \
    --test-windows 256 --out $4 --device cuda > $R/logs/$(basename $(dirname $4))-$(basename $4).log 2>&1
}
for k in ${LENS:-10 12 14 16}; do
  for m in ${MODELS:-hg38-mamba-1.4m hg38-hyenadna-1.4m}; do
    tag=$( [ $m = hg38-mamba-1.4m ] && echo mamba || echo hyena )
    species_run $m $k ${LR:-2e-3} $R/species/$tag-L$k
    echo "$tag L=2^$k rc=$? at $(el)s"
  done
done
for x in ${EXTRA:-}; do
  lr=${x%:*}; k=${x#*:}
  species_run hg38-hyenadna-1.4m $k $lr $R/species-lr$lr/hyena-L$k
  echo "hyena L=2^$k lr=$lr rc=$? at $(el)s"
done
python3 benchmarks/show_report.py $R --alone > $R/logs/report.log 2>&1
pack $R species
echo "all done at $(el)s"
