#!/usr/bin/env bash
# Species classification with a sequence-length curriculum, Mamba and HyenaDNA (1.4M presets):
# train at 2^12, then fine-tune that classifier at 2^14 (--init), then at 2^16. gpu_species.sh
# showed that at a fixed 105M tokens the long windows are too few labelled examples to learn
# from (1,600 windows at 2^16), as the paper's recipe (batch 64 windows at every length) implies.
# Each run ALONE on the GPU. Results: $OUT/chain.tgz. Needs carry [".whl", ".devdata"].
#   SEQSUITE_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_species_chain.sh
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
R=$OUT/chain; mkdir -p $R/logs $R/species
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
$S genomics make-demo /tmp/gdemo --size large > $R/logs/make-demo-genomics.log 2>&1
TOK=131072
for m in hg38-mamba-1.4m hg38-hyenadna-1.4m; do
  tag=$( [ $m = hg38-mamba-1.4m ] && echo mamba || echo hyena )
  prev=""
  for k in 12 14 16; do
    L=$(( 1 << k )); B=$(( TOK / L ))
    if [ -z "$prev" ]; then from="--preset $m"; steps=800; lr=2e-3; cap=${FIRST_S:-125}
    else from="--init $prev"; steps=${STEPS:-400}; lr=1e-3; cap=${NEXT_S:-75}; fi
    [ $tag = hyena ] && cap=$(( cap * 3 / 5 ))
    timeout -s INT $cap $S genomics finetune-species --manifest /tmp/gdemo/manifest.tsv $from \
      --seq-len $L --batch-size $B --steps $steps --lr $lr --warmup-frac 0.1 --eval-every 100 \
      --test-windows 256 --out $R/species/$tag-L$k --device cuda > $R/logs/species-$tag-L$k.log 2>&1
    echo "$tag L=2^$k rc=$? at $(el)s"
    prev=$R/species/$tag-L$k
  done
done
python3 benchmarks/show_report.py $R --alone > $R/logs/report.log 2>&1
pack $R chain
echo "all done at $(el)s"
