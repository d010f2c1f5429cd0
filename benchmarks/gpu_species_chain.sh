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
#   MODEL=hg38-mamba-1.4m SEQSUITE_COMMIT=<commit> bash benchmarks/gpu_species_chain.sh
#   MODEL=hg38-hyenadna-1.4m ...
# Table and PNG: unpack both, copy their species/ folders into one ROOT/species, then
#   python benchmarks/show_report.py ROOT --alone   (it keeps the best seed per model and length)
# Options (2026-11-29, after the first chain): PRETRAIN_STEPS=N first pretrains the backbone
# on the demo human genome (chr4/chr5 held out, as the species task holds them out) at
# 2^START_K and starts stage 1 from it (the paper's protocol). SCRATCH=1 trains every length
# from scratch instead of --init, HyenaDNA built with max_len = that length (its own l_max
# at every length). DRY=1 runs on the CPU without the device set-up (toy sizes: a syntax run).
#   MODEL=hg38-hyenadna-1.4m SCRATCH=1 LENS="12 14" ... bash benchmarks/gpu_species_chain.sh
#   MODEL=hg38-mamba-1.4m PRETRAIN_STEPS=400 ... bash benchmarks/gpu_species_chain.sh
#   DRY=1 DEMO_SIZE=small TOK=2048 START_K=8 LENS=9 SEEDS=0 STEPS0=4 STEPS=4 bash benchmarks/gpu_species_chain.sh
set -u
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
DEV=cuda
if [ -n "${DRY:-}" ]; then DEV=cpu; S="python3 -m seqsuite"; OUT=${OUT:-/tmp/dry-out}; mkdir -p $OUT; source benchmarks/pack.sh
else source benchmarks/device_setup.sh; fi
MODEL=${MODEL:-hg38-mamba-1.4m}
tag=$( [ $MODEL = hg38-mamba-1.4m ] && echo mamba || echo hyena )
R=$OUT/chain-$tag; mkdir -p $R/logs $R/species
export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
$S genomics make-demo /tmp/gdemo --size ${DEMO_SIZE:-large} > $R/logs/make-demo-genomics.log 2>&1
TOK=${TOK:-131072}; K0=${START_K:-10}; LENS=${LENS:-12 14 16}
last=$K0; for k in $LENS; do last=$k; done
MAXLEN=$( [ $tag = hyena ] && echo "--max-len $(( 1 << last ))" )
[ -n "${SCRATCH:-}" ] && [ $tag = hyena ] && MAXLEN="--max-len $(( 1 << K0 ))"
FIRST="--preset $MODEL $MAXLEN"
if [ "${PRETRAIN_STEPS:-0}" -gt 0 ]; then
  timeout ${PRETRAIN_S:-150} $S genomics pretrain --fasta /tmp/gdemo/apes/human.fa --valid-chroms chr4 --test-chroms chr5 \
    --preset $MODEL $MAXLEN --seq-len $(( 1 << K0 )) --batch-size $(( TOK >> K0 )) --steps $PRETRAIN_STEPS \
    --eval-every 100 --out $R/pretrain-$tag --device $DEV > $R/logs/pretrain-$tag.log 2>&1
  echo "$tag pretrain rc=$? at $(el)s"; grep -E "^pretrain:" $R/logs/pretrain-$tag.log
  FIRST="--init $R/pretrain-$tag"
fi
chain_run() {  # CAP K RUN_DIR ARGS...: one run at L = 2^K with TOK tokens per step
  local cap=$1 L=$(( 1 << $2 )) run=$3; shift 3
  timeout -s INT $cap $S genomics finetune-species --manifest /tmp/gdemo/manifest.tsv "$@" \
    --seq-len $L --batch-size $(( TOK / L )) --warmup-frac 0.1 --eval-every 100 --test-windows 256 \
    --out $run --device $DEV > $R/logs/$(basename $run).log 2>&1
}
best=""; best_acc=-1
for seed in ${SEEDS:-0 1 2}; do
  run=$R/species/$tag-L$K0-seed$seed
  chain_run ${FIRST_S:-90} $K0 $run $FIRST --steps ${STEPS0:-400} --lr 2e-3 --seed $seed
  acc=$(python3 -c "import csv,sys; r=[x for x in csv.DictReader(open('$run/metrics.csv')) if x['split']=='valid']; print(r[-1].get('accuracy') or -1 if r else -1)" 2>/dev/null || echo -1)
  echo "$tag L=2^$K0 seed $seed valid acc $acc at $(el)s"
  if python3 -c "import sys; sys.exit(0 if float('$acc') > float('$best_acc') else 1)"; then best=$run; best_acc=$acc; fi
done
echo "best first stage: $best ($best_acc)"
prev=$best
for k in $LENS; do
  if [ -n "${SCRATCH:-}" ]; then
    hl=$( [ $tag = hyena ] && echo "--max-len $(( 1 << k ))" )
    chain_run ${NEXT_S:-75} $k $R/species/$tag-L$k --preset $MODEL $hl --steps ${STEPS:-400} --lr 2e-3
  else
    chain_run ${NEXT_S:-75} $k $R/species/$tag-L$k --init $prev --steps ${STEPS:-400} --lr 1e-3
  fi
  echo "$tag L=2^$k rc=$? at $(el)s"
  prev=$R/species/$tag-L$k
done
pack $R chain-$tag
echo "all done at $(el)s"
