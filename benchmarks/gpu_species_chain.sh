#!/usr/bin/env bash
# Species classification with a window-length curriculum, for one model per call:
#   1. train at 2^START_K with each seed in SEEDS (STEPS0 steps) and keep the seed with the best
#      validation accuracy (the same rule for every model: "best of len(SEEDS) seeds");
#   2. fine-tune that classifier (--init) at each longer length in LENS, STEPS steps each.
# Why: gpu_species.sh (2026-11-29) showed that from scratch a run either escapes the
# log2(5)-bit plateau or not by luck, and that at a fixed token budget the long windows are
# too few labelled examples to learn from (1,600 windows at 2^16); the paper starts from
# pretrained backbones and shows 64 windows per step at every length. HyenaDNA is built with
# max_len = the last length in LENS (its l_max), so --init can carry it to the longer windows.
# Each run ALONE on the GPU. Results: $OUT/chain-<model>.tgz. Needs carry [".whl", ".devdata"].
#   MODEL=hg38-mamba-1.4m SEQSUITE_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_species_chain.sh
#   MODEL=hg38-hyenadna-1.4m ...
# Table and PNG: unpack both, copy their species/ folders into one ROOT/species, then
#   python benchmarks/show_report.py ROOT --alone   (it keeps the best seed per model and length)
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
source benchmarks/device_setup.sh
MODEL=${MODEL:-hg38-mamba-1.4m}
tag=$( [ $MODEL = hg38-mamba-1.4m ] && echo mamba || echo hyena )
R=$OUT/chain-$tag; mkdir -p $R/logs $R/species
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
$S genomics make-demo /tmp/gdemo --size large > $R/logs/make-demo-genomics.log 2>&1
TOK=${TOK:-131072}; K0=${START_K:-10}; LENS=${LENS:-12 14 16}
last=$K0; for k in $LENS; do last=$k; done
MAXLEN=$( [ $tag = hyena ] && echo "--max-len $(( 1 << last ))" )
chain_run() {  # CAP K RUN_DIR ARGS...: one run at L = 2^K with TOK tokens per step
  local cap=$1 L=$(( 1 << $2 )) run=$3; shift 3
  timeout -s INT $cap $S genomics finetune-species --manifest /tmp/gdemo/manifest.tsv "$@" \
    --seq-len $L --batch-size $(( TOK / L )) --warmup-frac 0.1 --eval-every 100 --test-windows 256 \
    --out $run --device cuda > $R/logs/$(basename $run).log 2>&1
}
best=""; best_acc=-1
for seed in ${SEEDS:-0 1 2}; do
  run=$R/species/$tag-L$K0-seed$seed
  chain_run ${FIRST_S:-90} $K0 $run --preset $MODEL $MAXLEN --steps ${STEPS0:-400} --lr 2e-3 --seed $seed
  acc=$(python3 -c "import csv,sys; r=[x for x in csv.DictReader(open('$run/metrics.csv')) if x['split']=='valid']; print(r[-1].get('accuracy') or -1 if r else -1)" 2>/dev/null || echo -1)
  echo "$tag L=2^$K0 seed $seed valid acc $acc at $(el)s"
  if python3 -c "import sys; sys.exit(0 if float('$acc') > float('$best_acc') else 1)"; then best=$run; best_acc=$acc; fi
done
echo "best first stage: $best ($best_acc)"
prev=$best
for k in $LENS; do
  chain_run ${NEXT_S:-75} $k $R/species/$tag-L$k --init $prev --steps ${STEPS:-400} --lr 1e-3
  echo "$tag L=2^$k rc=$? at $(el)s"
  prev=$R/species/$tag-L$k
done
pack $R chain-$tag
echo "all done at $(el)s"
